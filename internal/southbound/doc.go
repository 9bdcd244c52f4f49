// Package southbound says what a field-bus driver is to the edge role. A
// driver (Modbus now, OPC UA later) is an adapter.Adapter whose devices do
// not connect to the edge: the edge reaches out to them, polls the values
// their thing model's mapping names, and hands what it read to the same
// adapter.Intake as every other adapter, so that validation, units and dead
// letters are the same as for MQTT; commands and desired state go back
// through the command and twin services.
//
// The edge learns its field devices from the hub and gives each driver the
// ones whose URL scheme it takes (Assign); a driver replaces its list at
// run time (Driver.SetDevices) and reports each device's state (Status).
// Adding a protocol means one more package implementing Driver; the edge's
// wiring holds them as a list and names none.
package southbound
