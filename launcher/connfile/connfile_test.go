package connfile

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite the golden files under testdata/")

// localPorts is the rewrite every golden test applies: what kq does after
// binding its five local listeners.
var localPorts = map[string]int{Shell: 40001, IOPub: 40002, Stdin: 40003, Control: 40004, HB: 40005}

// keyOf digs the key out of a test input the way a human would, even from
// files that are not valid JSON, so the tests can check it never leaks.
var keyRE = regexp.MustCompile(`"?key"?\s*[:=]\s*"?([^",\s}]+)`)

func keysIn(data []byte) []string {
	var keys []string
	for _, m := range keyRE.FindAllSubmatch(data, -1) {
		if len(m[1]) >= 8 { // short fragments (a truncated key) are not the secret
			keys = append(keys, string(m[1]))
		}
	}
	return keys
}

func golden(t *testing.T, path string, got []byte) {
	t.Helper()
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("read golden (run go test -update to create it): %v", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs from output:\n--- got\n%s\n--- want\n%s", path, got, want)
	}
}

func TestGoldenValid(t *testing.T) {
	inputs, err := filepath.Glob("testdata/valid/*.json")
	if err != nil || len(inputs) == 0 {
		t.Fatalf("no inputs: %v", err)
	}
	for _, in := range inputs {
		name := strings.TrimSuffix(filepath.Base(in), ".json")
		t.Run(name, func(t *testing.T) {
			data, err := os.ReadFile(in)
			if err != nil {
				t.Fatal(err)
			}
			info, err := Parse(data)
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			out, err := info.Rewrite("127.0.0.1", localPorts)
			if err != nil {
				t.Fatalf("Rewrite: %v", err)
			}
			golden(t, strings.TrimSuffix(in, ".json")+".rewritten", out)

			// The output is itself a valid connection file with the new
			// address and ports and the original key.
			again, err := Parse(out)
			if err != nil {
				t.Fatalf("Parse(Rewrite()): %v", err)
			}
			if again.IP != "127.0.0.1" || again.Key != info.Key || again.KernelName != info.KernelName {
				t.Errorf("round trip changed fields: %v -> %v", info, again)
			}
			for _, p := range again.Ports() {
				if p.Number != localPorts[p.Name] {
					t.Errorf("%s = %d, want %d", p.Name, p.Number, localPorts[p.Name])
				}
			}
			// Every member other than ip and the ports is semantically unchanged.
			var before, after map[string]any
			if err := json.Unmarshal(data, &before); err != nil {
				t.Fatal(err)
			}
			if err := json.Unmarshal(out, &after); err != nil {
				t.Fatal(err)
			}
			for k := range localPorts {
				delete(before, k)
				delete(after, k)
			}
			delete(before, "ip")
			delete(after, "ip")
			if !reflect.DeepEqual(before, after) {
				t.Errorf("members changed:\nbefore %v\nafter  %v", before, after)
			}
		})
	}
}

// invalidCase says which field the error for one file in testdata/invalid
// must name and what it must say, on top of the golden error text; the golden
// file alone would let a reworded message drop the field name unnoticed.
type invalidCase struct {
	field string   // FieldError.Field expected somewhere in the error; "" for syntax errors
	want  []string // substrings of the message
}

// invalidCases has one entry per file in testdata/invalid, keyed by its base
// name; TestGoldenInvalid fails when a file and an entry do not pair up.
var invalidCases = map[string]invalidCase{
	"port_zero":         {Shell, []string{`"shell_port"`, "port 0 is out of range 1..65535"}},
	"port_70000":        {IOPub, []string{`"iopub_port"`, "port 70000 is out of range"}},
	"port_negative":     {HB, []string{`"hb_port"`, "port -1 is out of range"}},
	"port_missing":      {Stdin, []string{`"stdin_port"`, "missing"}},
	"port_string":       {Control, []string{`"control_port"`, "want a JSON integer, got a string"}},
	"port_float":        {Control, []string{`"control_port"`, "want an integer, got 34645.5"}},
	"port_duplicate":    {HB, []string{`"hb_port"`, "also shell_port"}},
	"transport_ipc":     {"transport", []string{`"transport"`, `"ipc" is not supported`}},
	"transport_missing": {"transport", []string{`"transport"`, "missing"}},
	"key_empty":         {"key", []string{`"key"`, "empty"}},
	"key_missing":       {"key", []string{`"key"`, "missing"}},
	"key_number":        {"key", []string{`"key"`, "want a JSON string, got a number"}},
	"scheme_md5":        {"signature_scheme", []string{`"signature_scheme"`, `"hmac-md5" is not supported`}},
	"scheme_missing":    {"signature_scheme", []string{`"signature_scheme"`, "missing"}},
	"duplicate_field":   {"key", []string{`"key"`, "more than once"}},
	"multiple_errors": {"", []string{
		`"shell_port": port 0`, `"iopub_port": want a JSON integer, got a string`,
		`"stdin_port": missing`, `"transport": "ipc"`, `"signature_scheme": "hmac-md5"`,
	}},
	"not_json":      {"", []string{"not valid JSON"}},
	"truncated":     {"", []string{"not valid JSON: truncated"}},
	"empty":         {"", []string{"not valid JSON: truncated"}},
	"array":         {"", []string{"not a JSON object"}},
	"trailing_data": {"", []string{"trailing data"}},
}

func TestGoldenInvalid(t *testing.T) {
	inputs, err := filepath.Glob("testdata/invalid/*.json")
	if err != nil {
		t.Fatal(err)
	}
	if len(inputs) != len(invalidCases) {
		t.Errorf("%d files in testdata/invalid, %d table entries", len(inputs), len(invalidCases))
	}
	for _, in := range inputs {
		name := strings.TrimSuffix(filepath.Base(in), ".json")
		t.Run(name, func(t *testing.T) {
			tt, ok := invalidCases[name]
			if !ok {
				t.Fatalf("no table entry for %s", in)
			}
			tt.check(t, in)
		})
	}
}

// check parses the file in and holds its error to the case: it must match
// ErrInvalid, say what the case wants, name the field, never quote the key,
// and equal the golden text.
func (tt invalidCase) check(t *testing.T, in string) {
	t.Helper()
	data, err := os.ReadFile(in)
	if err != nil {
		t.Fatal(err)
	}
	info, err := Parse(data)
	if err == nil {
		t.Fatalf("Parse succeeded: %v", info)
	}
	if !errors.Is(err, ErrInvalid) {
		t.Errorf("error does not match ErrInvalid: %v", err)
	}
	msg := err.Error()
	for _, w := range tt.want {
		if !strings.Contains(msg, w) {
			t.Errorf("error %q does not contain %q", msg, w)
		}
	}
	if tt.field != "" {
		var fe *FieldError
		if !errors.As(err, &fe) || fe.Field != tt.field {
			t.Errorf("errors.As FieldError = %+v, want field %q", fe, tt.field)
		}
	}
	for _, k := range keysIn(data) {
		if strings.Contains(msg, k) {
			t.Errorf("error message contains the key %q: %s", k, msg)
		}
	}
	golden(t, strings.TrimSuffix(in, ".json")+".err", []byte(msg+"\n"))
}

func TestParseFields(t *testing.T) {
	info := parseFile(t, "testdata/valid/ipykernel.json")
	want := []Port{{Shell, 35463}, {IOPub, 43771}, {Stdin, 36619}, {Control, 34645}, {HB, 52947}}
	if got := info.Ports(); !reflect.DeepEqual(got, want) {
		t.Errorf("Ports() = %v, want %v", got, want)
	}
	if info.Transport != "tcp" || info.IP != "127.0.0.1" || info.SignatureScheme != "hmac-sha256" ||
		info.Key != "ea463f19-f7fe740ef85acc37401ffdfc" || info.KernelName != "" {
		t.Errorf("fields: %+v", *info)
	}
	ep, err := info.Endpoint(Control)
	if err != nil || ep != "tcp://127.0.0.1:34645" {
		t.Errorf("Endpoint(control) = %q, %v", ep, err)
	}
	if _, err := info.Endpoint("bogus_port"); err == nil {
		t.Error("Endpoint(bogus_port) succeeded")
	}
}

func TestEndpointIPv6(t *testing.T) {
	info := parseFile(t, "testdata/valid/compact_reordered.json")
	if ep, _ := info.Endpoint(Shell); ep != "tcp://[::1]:4" {
		t.Errorf("Endpoint = %q", ep)
	}
}

func TestValidateHandBuilt(t *testing.T) {
	good := Info{
		Transport: "tcp", IP: "127.0.0.1", Key: "hand-built-key-0001", SignatureScheme: "hmac-sha256",
		ShellPort: 1001, IOPubPort: 1002, StdinPort: 1003, ControlPort: 1004, HBPort: 1005,
	}
	tests := []struct {
		name   string
		mutate func(*Info)
		want   string // "" means valid
	}{
		{"valid", func(*Info) {}, ""},
		{"zero port reads as out of range, not missing", func(i *Info) { i.StdinPort = 0 }, `"stdin_port": port 0 is out of range`},
		{"port above range", func(i *Info) { i.HBPort = 65536 }, `"hb_port": port 65536`},
		{"empty transport", func(i *Info) { i.Transport = "" }, `"transport": "" is not supported`},
		{"empty key", func(i *Info) { i.Key = "" }, `"key": empty`},
		{"empty scheme", func(i *Info) { i.SignatureScheme = "" }, `"signature_scheme": "" is not supported`},
		{"sha512", func(i *Info) { i.SignatureScheme = "hmac-sha512" }, `"hmac-sha512" is not supported`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			i := good
			tt.mutate(&i)
			err := i.Validate()
			switch {
			case tt.want == "" && err != nil:
				t.Fatalf("Validate: %v", err)
			case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
				t.Fatalf("Validate = %v, want %q", err, tt.want)
			case err != nil && strings.Contains(err.Error(), good.Key):
				t.Fatalf("error contains the key: %v", err)
			}
		})
	}
}

func TestRewriteHandBuilt(t *testing.T) {
	i := &Info{
		Transport: "tcp", IP: "10.1.1.1", Key: "hand-built-key-0002", SignatureScheme: "hmac-sha256",
		KernelName: "python3", ShellPort: 1001, IOPubPort: 1002, StdinPort: 1003, ControlPort: 1004, HBPort: 1005,
	}
	out, err := i.Rewrite("127.0.0.1", map[string]int{HB: 2005})
	if err != nil {
		t.Fatal(err)
	}
	want := `{
  "shell_port": 1001,
  "iopub_port": 1002,
  "stdin_port": 1003,
  "control_port": 1004,
  "hb_port": 2005,
  "ip": "127.0.0.1",
  "key": "hand-built-key-0002",
  "transport": "tcp",
  "signature_scheme": "hmac-sha256",
  "kernel_name": "python3"
}
`
	if string(out) != want {
		t.Errorf("got\n%s\nwant\n%s", out, want)
	}
}

func TestRewriteErrors(t *testing.T) {
	info := parseFile(t, "testdata/valid/ipykernel.json")
	tests := []struct {
		name  string
		ip    string
		ports map[string]int
		want  string
	}{
		{"unknown port name", "127.0.0.1", map[string]int{"shell": 1}, `"shell" is not a port field`},
		{"port 0", "127.0.0.1", map[string]int{Shell: 0}, "shell_port 0 is out of range"},
		{"port too big", "127.0.0.1", map[string]int{IOPub: 65536}, "iopub_port 65536 is out of range"},
		{"empty ip", "", nil, "empty ip"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := info.Rewrite(tt.ip, tt.ports)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Rewrite = %v, want %q", err, tt.want)
			}
		})
	}

	// Only the named ports change; nil ports rewrites just the address.
	out, err := info.Rewrite("127.0.0.2", nil)
	if err != nil {
		t.Fatal(err)
	}
	again, err := Parse(out)
	if err != nil {
		t.Fatal(err)
	}
	if again.IP != "127.0.0.2" || !reflect.DeepEqual(again.Ports(), info.Ports()) {
		t.Errorf("Rewrite(ip only) = %s", out)
	}
}

func TestRewriteDeterministic(t *testing.T) {
	info := parseFile(t, "testdata/valid/unknown_fields.json")
	first, err := info.Rewrite("127.0.0.1", localPorts)
	if err != nil {
		t.Fatal(err)
	}
	for range 20 {
		out, err := info.Rewrite("127.0.0.1", localPorts)
		if err != nil || !bytes.Equal(out, first) {
			t.Fatalf("Rewrite is not deterministic: %v\n%s\n%s", err, out, first)
		}
	}
}

func TestKeyRedacted(t *testing.T) {
	info := parseFile(t, "testdata/valid/ipykernel.json")
	var logged bytes.Buffer
	slog.New(slog.NewJSONHandler(&logged, nil)).Info("parsed", "info", info, "value", *info)
	for name, s := range map[string]string{
		"%v":   fmt.Sprintf("%v", info),
		"%+v":  fmt.Sprintf("%+v", info),
		"%#v":  fmt.Sprintf("%#v", info),
		"%s":   fmt.Sprintf("%s", *info),
		"%v.":  fmt.Sprintf("%v", *info),
		"slog": logged.String(),
	} {
		if strings.Contains(s, info.Key) {
			t.Errorf("%s output contains the key: %s", name, s)
		}
		if !strings.Contains(s, "redacted") {
			t.Errorf("%s output does not say the key was redacted: %s", name, s)
		}
	}
}

func FuzzParse(f *testing.F) {
	inputs, _ := filepath.Glob("testdata/*/*.json")
	for _, in := range inputs {
		data, err := os.ReadFile(in)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		info, err := Parse(data)
		if err != nil {
			for _, k := range keysIn(data) {
				if len(k) >= 16 && strings.Contains(err.Error(), k) {
					t.Fatalf("error contains key %q: %v", k, err)
				}
			}
			return
		}
		out, err := info.Rewrite("127.0.0.1", localPorts)
		if err != nil {
			t.Fatalf("Rewrite of a valid file: %v", err)
		}
		if _, err := Parse(out); err != nil {
			t.Fatalf("Parse(Rewrite()) = %v\n%s", err, out)
		}
	})
}

// parseFile parses a testdata file that must be valid.
func parseFile(t *testing.T, path string) *Info {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	info, err := Parse(data)
	if err != nil {
		t.Fatal(err)
	}
	return info
}
