// Package modbus is the edge's southbound Modbus driver (capability C2): it
// polls Modbus TCP devices, and Modbus RTU devices behind a TCP gateway
// (rtuovertcp://), for the values their thing model's Modbus mapping names
// (thingmodel.ModbusMapping, PROTOCOL.md §10), publishes them as the
// device's telemetry, and writes registers and coils for commands and
// desired state. It is a southbound.Driver, and so an adapter.Adapter the
// edge holds in its list; the client is github.com/simonvetter/modbus.
//
// # Polling
//
// Each device has its own poll loop (a goroutine) and its own connection,
// and every request has a timeout (Device.Timeout, Options.Timeout), so a
// device that hangs, answers garbage or answers with exceptions delays
// only itself. A group of the mapping is read every interval: registers
// of one table at adjacent addresses in one request (at most 125
// registers, 2000 bits), others each in their own, so that a hole in a
// device's register map never fails a read. The values of one poll go to
// adapter.Intake as one SenML JSON pack stamped with the poll's time,
// source "modbus", and each register's unit when the mapping names one: the
// intake validates them against the model, converts units and keeps a
// refused pack as a dead letter, exactly as for a device on MQTT. A float
// register holding NaN or an infinity leaves its property out of that poll
// (cause bad_value).
//
// # Failures
//
// A request that times out, a connection that cannot open or breaks, and a
// gateway's exceptions 0x0A and 0x0B (the device behind it does not
// answer) mean the device is down: it is reported offline through
// Options.Presence with the reason (timeout, network,
// gateway_path_unavailable, gateway_target_failed), its commands wait, and
// the next attempt waits RetryBackoff·2^(n-1) after the n-th failure in a
// row, at most MaxBackoff, jittered; the first answer brings it back
// online. Any other exception, or a malformed answer (a wrong length,
// function, unit id or CRC), is an answer: the device stays online, the
// failing group waits as long as that backoff (or its interval) before its
// next read, and the error is counted. After a timeout or a malformed
// answer the connection is closed and dialed again, so that a late frame
// is never read as the next answer. Status reports every device: online,
// the reason, the latest error, the polls, the failures in a row and the
// current backoff. Metrics: wanwu_modbus_polls_total,
// wanwu_modbus_errors_total{cause}, wanwu_modbus_writes_total{result},
// wanwu_modbus_devices, wanwu_modbus_devices_online.
//
// # Writes
//
// While a device answers, a sink is attached to the command service for
// it. A command for an action of the mapping is written by the device's
// loop, between polls: a coil (function 05), one register (06) or several
// (16), the argument scaled back and rounded to the register's integer;
// the result is recorded at once: succeeded, or failed with the Modbus
// exception ("Modbus exception 03: illegal data value") or why the value
// does not fit. A write the device does not answer is left unconfirmed, and
// the command service offers it again once the device is back (a write of
// a value is safe to repeat). A property mapped to a holding register or a
// coil that the model does not declare read-only is written when the
// twin's desired state differs from the reported one (TwinChanged, and
// whenever the device comes online), and what was written is reported.
//
// # Lifecycle
//
// New takes the device list; SetDevices replaces it at run time (the
// edge learns its devices from the hub): a changed device's new loop
// starts once its old one has ended, so that two loops never share a
// device. DisconnectDevice stops a revoked device's loop until a later
// list names it again. Shutdown ends every loop and waits for it; a loop
// may be waiting out one request's timeout.
package modbus
