package device_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/wanwu-iot/wanwu/device"
	"github.com/wanwu-iot/wanwu/internal/config"
	"github.com/wanwu-iot/wanwu/internal/hub"
	"github.com/wanwu-iot/wanwu/internal/mqtt"
)

// The examples run against a hub that TestMain starts: hubURL is its API,
// brokerURL its MQTT listener, claimToken a claim token for tenant acme
// (what `wanwu ctl claim create --tenant acme --model acme:pump@1.0.0`
// prints), adminToken the operator's API token.
var hubURL, brokerURL, claimToken, adminToken string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "wanwu-device-example-")
	if err != nil {
		log.Fatal(err)
	}
	stop, err := startExampleHub(dir)
	if err != nil {
		os.RemoveAll(dir)
		log.Fatalf("example hub: %v", err)
	}
	code := m.Run()
	stop()
	os.RemoveAll(dir)
	os.Exit(code)
}

// startExampleHub starts a hub in dir with tenant acme, the pump model and
// a claim token for the examples.
func startExampleHub(dir string) (stop func(), err error) {
	cfg := config.DefaultHub()
	cfg.DataDir = dir
	cfg.HTTP.Listen, cfg.HTTP.TLSListen = "127.0.0.1:0", ""
	cfg.MQTT.Listen, cfg.MQTT.TLSListen = "127.0.0.1:0", ""
	cfg.CoAP.Listen, cfg.CoAP.DTLSListen = "", ""
	h := hub.New(hub.Options{Config: cfg, Logger: slog.New(slog.DiscardHandler), Version: "example"})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := h.Start(ctx); err != nil {
		return nil, err
	}
	stop = func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		_ = h.Shutdown(ctx)
	}
	tok, err := os.ReadFile(filepath.Join(dir, hub.AdminTokenFile))
	if err != nil {
		stop()
		return nil, err
	}
	hubURL, brokerURL, adminToken = h.URL(), "mqtt://"+h.MQTT().Addr(mqtt.ListenerTCP), strings.TrimSpace(string(tok))
	model, err := os.ReadFile(pumpModel)
	if err == nil {
		_, err = adminCall("POST", "/api/v1/tenants", map[string]string{"name": "acme"})
	}
	if err == nil {
		_, err = adminCall("POST", "/api/v1/models", json.RawMessage(model))
	}
	var claim struct{ Token string }
	if err == nil {
		var b []byte
		b, err = adminCall("POST", "/api/v1/claims", map[string]any{"tenant": "acme", "max_uses": 100,
			"model": map[string]string{"id": "acme:pump", "version": "1.0.0"}})
		if err == nil {
			err = json.Unmarshal(b, &claim)
		}
	}
	if err != nil {
		stop()
		return nil, err
	}
	claimToken = claim.Token
	return stop, nil
}

// adminCall is the operator's side of the examples: a call to the hub's API.
func adminCall(method, path string, body any) ([]byte, error) {
	b, _ := json.Marshal(body)
	req, err := http.NewRequest(method, hubURL+path, bytes.NewReader(b))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", "Bearer "+adminToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	out, err := io.ReadAll(resp.Body)
	if err == nil && resp.StatusCode >= 300 {
		err = fmt.Errorf("%s %s: %d %s", method, path, resp.StatusCode, out)
	}
	return out, err
}

// A device on its first start: it makes a key, claims its identity with the
// claim token it was given at the factory, and keeps it.
func ExampleClaim() {
	dir, _ := os.MkdirTemp("", "pump-identity-")
	defer os.RemoveAll(dir)

	key, err := device.GenerateKey()
	if err != nil {
		log.Fatal(err)
	}
	id, err := device.Claim(context.Background(), hubURL, claimToken, key, device.ClaimOptions{ID: "pump-0042"})
	if err != nil {
		log.Fatal(err)
	}
	if err := id.Save(dir); err != nil {
		log.Fatal(err)
	}
	// On every later start: device.LoadIdentity(dir).
	fmt.Println(id.Code)
	// Output: acme:pump-0042
}

// Connect and publish: Publish returns once the hub has the records
// durably; until then they wait in the buffer directory, across lost
// connections and restarts of the device.
func ExampleConnect() {
	dir, _ := os.MkdirTemp("", "pump-")
	defer os.RemoveAll(dir)
	key, _ := device.GenerateKey()
	id, err := device.Claim(context.Background(), hubURL, claimToken, key, device.ClaimOptions{ID: "pump-0043"})
	if err != nil {
		log.Fatal(err)
	}

	c, err := device.Connect(context.Background(), device.Options{
		Identity:  id,
		Broker:    brokerURL, // mqtt://host:1883
		BufferDir: filepath.Join(dir, "buffer"),
	})
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err = c.Publish(ctx,
		device.Record{Name: "temperature", Unit: "Cel", Value: 71.5},
		device.Record{Name: "running", Value: true})
	fmt.Println("acknowledged:", err == nil)

	// A value the thing model does not allow is refused with the reason.
	err = c.Publish(ctx, device.Record{Name: "temperature", Value: 500})
	fmt.Println(err)
	// Output:
	// acknowledged: true
	// device: the hub refused the message: out_of_range: temperature=500 above maximum 125
}

// Commands: the device carries out each command once and answers with its
// result; twins: it acts on the desired state and reports what it reached.
func ExampleClient_OnCommand() {
	dir, _ := os.MkdirTemp("", "pump-")
	defer os.RemoveAll(dir)
	key, _ := device.GenerateKey()
	id, err := device.Claim(context.Background(), hubURL, claimToken, key, device.ClaimOptions{ID: "pump-0044"})
	if err != nil {
		log.Fatal(err)
	}
	c, err := device.Connect(context.Background(), device.Options{Identity: id, Broker: brokerURL, BufferDir: dir})
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()

	done := make(chan struct{})
	c.OnCommand(func(ctx context.Context, cmd device.Command) device.Result {
		defer close(done)
		var args struct {
			RPM float64 `json:"rpm"`
		}
		if err := json.Unmarshal(cmd.Args, &args); err != nil {
			return device.Failed("bad arguments")
		}
		fmt.Println(cmd.Action, args.RPM)
		return device.Succeeded(map[string]any{"rpm": args.RPM})
	})

	// The operator's side (wanwu ctl command send acme:pump-0044 setSpeed rpm=1200).
	if _, err := adminCall("POST", "/api/v1/objects/acme:pump-0044/commands",
		map[string]any{"action": "setSpeed", "args": map[string]any{"rpm": 1200}}); err != nil {
		log.Fatal(err)
	}
	<-done
	// Output: setSpeed 1200
}

// The exact bytes Publish sends for one record (docs/DEVICES.md).
func ExampleEncodeSenML() {
	b, _ := device.EncodeSenML("acme:pump-0001", time.Unix(1700000000, 0),
		device.Record{Name: "temperature", Unit: "Cel", Value: 21.5})
	fmt.Println(string(b))
	// Output: [{"bn":"acme:pump-0001/","n":"temperature","u":"Cel","t":1700000000,"v":21.5}]
}

// A device token: the MQTT password and the CoAP "t=" query of a device
// without a client certificate. The key here is the RFC 8032 test key
// (never use it for a device); Ed25519 signatures are deterministic, so the
// token is always this one (docs/DEVICES.md takes it apart).
func ExampleIdentity_Token() {
	seed, _ := hex.DecodeString("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60")
	id := &device.Identity{Code: "acme:pump-0001", Key: ed25519.NewKeyFromSeed(seed)}
	tok, _ := id.Token(time.Unix(1700000000, 0), time.Hour)
	fmt.Println(tok)
	// Output: eyJhbGciOiJFZERTQSIsInR5cCI6IkpXVCJ9.eyJzdWIiOiJhY21lOnB1bXAtMDAwMSIsImF1ZCI6Indhbnd1IiwiaWF0IjoxNzAwMDAwMDAwLCJleHAiOjE3MDAwMDM2MDB9.W9Pv27RI8HwzRbFx3iaiBh6kVRn3ICy73o__1kGK5k-o7tOvCHKGT84ePO4jhAcV9AF7PRSu5DkyOUvuqZtPBQ
}
