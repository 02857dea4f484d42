package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"go/ast"
	"go/parser"
	"go/token"
	"net/netip"
	"os"
	"os/exec"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/santhosh-tekuri/jsonschema/v6"

	"github.com/tcpvet/tcpvet/diag"
	"github.com/tcpvet/tcpvet/rules"
	"github.com/tcpvet/tcpvet/schema"
	"github.com/tcpvet/tcpvet/ui"
)

// compileSchema compiles schema/tcpvet.schema.json, checking it against
// draft 2020-12's own metaschema, with formats (date-time) asserted.
func compileSchema(t *testing.T) *jsonschema.Schema {
	t.Helper()
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(schema.JSON))
	if err != nil {
		t.Fatal(err)
	}
	c := jsonschema.NewCompiler()
	c.AssertFormat()
	if err := c.AddResource(schema.ID, doc); err != nil {
		t.Fatal(err)
	}
	sch, err := c.Compile(schema.ID)
	if err != nil {
		t.Fatal(err)
	}
	return sch
}

// compileNodeSchema compiles schema/node.schema.json, with the schema its
// objects refer to.
func compileNodeSchema(t *testing.T) *jsonschema.Schema {
	t.Helper()
	c := jsonschema.NewCompiler()
	c.AssertFormat()
	for id, b := range map[string][]byte{schema.ID: schema.JSON, schema.NodeID: schema.Node} {
		doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(b))
		if err != nil {
			t.Fatal(err)
		}
		if err := c.AddResource(id, doc); err != nil {
			t.Fatal(err)
		}
	}
	sch, err := c.Compile(schema.NodeID)
	if err != nil {
		t.Fatal(err)
	}
	return sch
}

// validate validates a JSON document against sch.
func validate(sch *jsonschema.Schema, b []byte) error {
	inst, err := jsonschema.UnmarshalJSON(bytes.NewReader(b))
	if err != nil {
		return err
	}
	return sch.Validate(inst)
}

// TestJSONMatchesSchema runs the real binary's --json on a namespace with
// a socket in each situation tcpvet describes (listeners; established
// connections with and without keepalive, with their own timings and
// TCP_USER_TIMEOUT, over IPv4 and IPv6; a dead peer; a stalled reader;
// CLOSE_WAIT, FIN_WAIT2, TIME_WAIT), with conntrack tracking the target's
// flows and a middlebox declared, so that findings carry every part of
// their evidence; and validates the output against the schema.
func TestJSONMatchesSchema(t *testing.T) {
	sch := compileSchema(t)
	s := newScenario(t)
	// A rule that needs conntrack makes tcpvet read the target's table
	// and firewall, and each tracked socket's entry.
	s.target.Run(t, "nft", "add table ip watch")
	s.target.Run(t, "nft", "add chain ip watch out { type filter hook output priority 0 ; }")
	s.target.Run(t, "nft", "add rule ip watch out ct state established counter accept")
	s.client.Write(t, "ka", 100)
	s.client.Wait(t, "written", "ka", 5*time.Second)

	cmd := exec.Command(binary(t), "--json", "--netns", s.target.Path, "--middlebox", "aws-nlb")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	var exit *exec.ExitError
	if err != nil && !(errors.As(err, &exit) && exit.ExitCode() == 3) {
		t.Fatalf("tcpvet --json: %v\n%s", err, stderr.String())
	}
	if err := validate(sch, out); err != nil {
		t.Fatalf("tcpvet --json does not match schema/tcpvet.schema.json: %v", err)
	}

	// The document must hold what the schema was to be tried on, or this
	// test proves less than it says.
	// ui.Document reads the snapshot and the report: a struct embedding
	// diag.Snapshot would take its UnmarshalJSON, and read the first alone.
	var doc ui.Document
	if err := json.Unmarshal(out, &doc); err != nil {
		t.Fatal(err)
	}
	states := map[diag.State]int{}
	var keepalive, ownOptions, tracked int
	for _, sk := range doc.Sockets {
		states[sk.State]++
		if sk.Keepalive.Enabled != nil && *sk.Keepalive.Enabled {
			keepalive++
		}
		if sk.Keepalive.Source == "socket" {
			ownOptions++
		}
		if len(sk.Conntrack) > 0 {
			tracked++
		}
	}
	severities := map[rules.Severity]int{}
	parts := map[string]bool{}
	for _, f := range doc.Findings {
		severities[f.Severity]++
		parts["path"] = parts["path"] || f.Evidence.PathEvidence != nil
		parts["give-up"] = parts["give-up"] || f.Evidence.GiveUpEvidence != nil
		parts["queue"] = parts["queue"] || f.Evidence.QueueEvidence != nil
	}
	switch {
	case states[diag.Listen] == 0, states[diag.Established] == 0, states[diag.TimeWait] == 0, states[diag.CloseWait] == 0:
		t.Errorf("want listeners and ESTABLISHED, TIME_WAIT and CLOSE_WAIT sockets, got %v", states)
	case keepalive == 0 || ownOptions == 0 || tracked == 0:
		t.Errorf("want sockets with keepalive (%d), with their own timings (%d), with a conntrack entry (%d)", keepalive, ownOptions, tracked)
	case severities[rules.Critical] == 0 || len(doc.Middleboxes) == 0 || doc.Target.Conntrack == nil || doc.Target.Firewall == nil:
		t.Errorf("want a critical finding (%v), a middlebox (%d), the target's conntrack and firewall", severities, len(doc.Middleboxes))
	case !parts["path"] || !parts["give-up"] || !parts["queue"]:
		t.Errorf("want findings with path, give-up and queue evidence, got %v", parts)
	}
	t.Logf("%d sockets %v, %d findings %v, evidence %v: valid", len(doc.Sockets), states, len(doc.Findings), severities, parts)

	// A watch's document: what was observed of each connection, and the
	// one that ended while watched.
	var wout, werr bytes.Buffer
	w := exec.Command(binary(t), "--json", "--watch", "3s", "--netns", s.target.Path, "--middlebox", "aws-nlb")
	w.Stdout, w.Stderr = &wout, &werr
	if err := w.Start(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(1500 * time.Millisecond)
	s.client.Close(t, "ka")
	if err := w.Wait(); err != nil && !(errors.As(err, &exit) && exit.ExitCode() == 3) {
		t.Fatalf("tcpvet --json --watch: %v\n%s", err, werr.String())
	}
	if err := validate(sch, wout.Bytes()); err != nil {
		t.Fatalf("tcpvet --json --watch does not match schema/tcpvet.schema.json: %v", err)
	}
	var watched struct{ diag.Snapshot }
	if err := json.Unmarshal(wout.Bytes(), &watched); err != nil {
		t.Fatal(err)
	}
	observed := 0
	for _, sk := range watched.Sockets {
		if sk.Observed != nil {
			observed++
		}
	}
	if watched.Watch == nil || observed == 0 || len(watched.Closed) == 0 {
		t.Errorf("the watch's document has watch %+v, %d sockets observed, %d closed: want all three", watched.Watch, observed, len(watched.Closed))
	}
}

// validDocument is a small document of the schema's shape: one socket and
// one finding about it.
const validDocument = `{
  "schema": "tcpvet/v1",
  "taken_at": "2026-11-23T18:00:00.123456789Z",
  "target": {"netns_inode": 4026531840, "path": "/proc/self/ns/net", "addresses": ["127.0.0.1", "::1"]},
  "host": {"visible": false, "netns_inode": 0, "path": "/proc/1/ns/net"},
  "sysctls": {"target": {"net.ipv4.tcp_keepalive_time": 7200}, "host": null},
  "sockets": [{
    "id": "2a", "inode": 1234, "uid": 0, "family": "inet", "state": "ESTABLISHED",
    "local": "10.0.0.1:40000", "remote": "[2001:db8::1]:443", "recv_q": 0, "send_q": 0,
    "timer": {"kind": "keepalive", "expires_ms": 1000, "retrans": 0},
    "tcp_info": null,
    "keepalive": {"enabled": true, "idle_s": 60, "interval_s": 10, "probes": 5, "source": "socket"},
    "user_timeout_ms": 0, "syn_retries": 6,
    "processes": [{"pid": 1, "comm": "app", "fd": 3}]
  }],
  "processes": 1,
  "notes": [{"code": "owners-hidden", "text": "1 process could not be inspected"}],
  "middleboxes": [{"name": "aws-nlb", "idle_timeout_s": 350, "on_expiry": "reset", "source": "flag", "scope": "every connection that leaves the namespace"}],
  "findings": [{
    "rule": "keepalive-too-slow", "severity": "critical", "socket": "2a", "summary": "s",
    "failing": "next-write", "fails_in_s": 1.5,
    "evidence": {"idle_s": 1, "side": "client", "keepalive": true, "forgets_in_s": 349, "already_forgotten": false, "gives_up_in_s": 3},
    "fix": [{"where": "go", "snippet": "x"}]
  }]
}`

// TestSchemaRefuses: the schema takes validDocument and refuses it with a
// wrong type, an unknown key, a value outside an enum or a required key
// missing, so that TestJSONMatchesSchema can fail.
func TestSchemaRefuses(t *testing.T) {
	sch := compileSchema(t)
	if err := validate(sch, []byte(validDocument)); err != nil {
		t.Fatalf("the valid document is refused: %v", err)
	}
	for _, tt := range []struct{ what, from, to string }{
		{"a socket's inode as a string", `"inode": 1234`, `"inode": "1234"`},
		{"a negative queue", `"recv_q": 0`, `"recv_q": -1`},
		{"an unknown key in a socket", `"uid": 0,`, `"uid": 0, "owner": "root",`},
		{"an unknown key at the top", `"processes": 1,`, `"processes": 1, "extra": true,`},
		{"an unknown key in the evidence", `"gives_up_in_s": 3`, `"gives_up_in_s": 3, "guess": 1`},
		{"part of the path evidence alone", `"idle_s": 1, "side": "client", `, ``},
		{"an unknown state", `"ESTABLISHED"`, `"ESTAB"`},
		{"an unknown timer", `"kind": "keepalive"`, `"kind": "delack"`},
		{"an unknown severity", `"severity": "critical"`, `"severity": "fatal"`},
		{"an unknown rule", `"keepalive-too-slow"`, `"keepalive-slow"`},
		{"an unknown source", `"source": "socket"`, `"source": "app"`},
		{"a socket id not in hex", `"id": "2a"`, `"id": "sk:2a"`},
		{"a bad time", `"2026-11-23T18:00:00.123456789Z"`, `"yesterday"`},
		{"an address without a port", `"10.0.0.1:40000"`, `"10.0.0.1"`},
		{"another schema", `"tcpvet/v1"`, `"tcpvet/v2"`},
		{"no sockets", `"sockets": [{`, `"sockets_": [{`},
		{"keepalive unknown without null", `"enabled": true`, `"enabled": "yes"`},
		{"a sysctl that is not one", `"net.ipv4.tcp_keepalive_time"`, `"tcp_keepalive_time"`},
		{"a note as a bare string", `{"code": "owners-hidden", "text": "1 process could not be inspected"}`, `"1 process could not be inspected"`},
		{"an unknown note code", `"code": "owners-hidden"`, `"code": "owners-gone"`},
		{"a note without a code", `"code": "owners-hidden", `, ``},
	} {
		if !strings.Contains(validDocument, tt.from) {
			t.Fatalf("%s: %q is not in the document", tt.what, tt.from)
		}
		doc := strings.Replace(validDocument, tt.from, tt.to, 1)
		if err := validate(sch, []byte(doc)); err == nil {
			t.Errorf("the schema takes %s", tt.what)
		}
	}
}

// TestSchemaCoversEveryField holds the schema's objects to the Go types
// they describe: the same keys, and required exactly those the type always
// writes (no omitempty). A field added to the output without the schema
// fails here even where no test's document holds it.
func TestSchemaCoversEveryField(t *testing.T) {
	var sch struct {
		Properties map[string]json.RawMessage `json:"properties"`
		Required   []string                   `json:"required"`
		Defs       map[string]struct {
			Properties map[string]json.RawMessage `json:"properties"`
			Required   []string                   `json:"required"`
		} `json:"$defs"`
	}
	if err := json.Unmarshal(schema.JSON, &sch); err != nil {
		t.Fatal(err)
	}
	check := func(name string, props map[string]json.RawMessage, required, keys, always []string) {
		var have []string
		for k := range props {
			have = append(have, k)
		}
		slices.Sort(keys)
		slices.Sort(have)
		if !slices.Equal(keys, have) {
			t.Errorf("%s: the schema has keys %v, the Go type %v", name, have, keys)
		}
		if name == "Evidence" {
			return // its parts are each optional: see dependentRequired
		}
		slices.Sort(always)
		required = slices.Sorted(slices.Values(required))
		if !slices.Equal(always, required) {
			t.Errorf("%s: the schema requires %v, the Go type always writes %v", name, required, always)
		}
	}
	// The document, its namespaces and their sysctls are written by
	// MarshalJSON methods (a target's and a host's layouts differ): their
	// keys are those written of a value with every field set, and of an
	// empty one.
	full := diag.Snapshot{
		Target: diag.Namespace{PID: 1, IPVS: &diag.IPVS{}, Conntrack: &diag.Conntrack{}, Firewall: &diag.Firewall{}, Addresses: []netip.Addr{netip.IPv6Loopback()}},
		Notes:  []diag.Note{{}}, Watch: &diag.Watch{}, Closed: []diag.Closed{},
	}
	full.Host = full.Target
	keys, always := writtenKeys(t, ui.Document{Snapshot: &full}, ui.Document{Snapshot: &diag.Snapshot{}})
	check("the document", sch.Properties, sch.Required, keys, always)
	for _, def := range []string{"target", "host", "sysctls"} {
		keys, always := writtenKeys(t, full, diag.Snapshot{}, def)
		name := map[string]string{"target": "Target", "host": "Host", "sysctls": "sysctls"}[def]
		check(name, sch.Defs[name].Properties, sch.Defs[name].Required, keys, always)
	}
	for name, typ := range map[string]reflect.Type{
		"Socket":      reflect.TypeFor[diag.Socket](),
		"Timer":       reflect.TypeFor[diag.Timer](),
		"Keepalive":   reflect.TypeFor[diag.Keepalive](),
		"TCPInfo":     reflect.TypeFor[diag.TCPInfo](),
		"Process":     reflect.TypeFor[diag.Process](),
		"Flow":        reflect.TypeFor[diag.Flow](),
		"IPVSConn":    reflect.TypeFor[diag.IPVSConn](),
		"IPVS":        reflect.TypeFor[diag.IPVS](),
		"Conntrack":   reflect.TypeFor[diag.Conntrack](),
		"Firewall":    reflect.TypeFor[diag.Firewall](),
		"InvalidDrop": reflect.TypeFor[diag.InvalidDrop](),
		"Middlebox":   reflect.TypeFor[rules.Middlebox](),
		"Finding":     reflect.TypeFor[rules.Finding](),
		"Fix":         reflect.TypeFor[rules.Fix](),
		"Evidence":    reflect.TypeFor[rules.Evidence](),
		"Watch":       reflect.TypeFor[diag.Watch](),
		"Observed":    reflect.TypeFor[diag.Observed](),
		"Pings":       reflect.TypeFor[diag.Pings](),
		"Closed":      reflect.TypeFor[diag.Closed](),
		"Note":        reflect.TypeFor[diag.Note](),
	} {
		def, ok := sch.Defs[name]
		if !ok {
			t.Errorf("the schema has no $defs/%s", name)
			continue
		}
		keys, always := jsonKeys(typ)
		check(name, def.Properties, def.Required, keys, always)
	}
}

// writtenKeys lists the keys of the JSON object full marshals to (or of
// its object at key in, when given), and those of them that empty's has
// too: what is written always.
func writtenKeys(t *testing.T, full, empty any, in ...string) (keys, always []string) {
	t.Helper()
	object := func(v any) map[string]json.RawMessage {
		b, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		var o map[string]json.RawMessage
		if err := json.Unmarshal(b, &o); err != nil {
			t.Fatal(err)
		}
		for _, k := range in {
			var inner map[string]json.RawMessage
			if err := json.Unmarshal(o[k], &inner); err != nil {
				t.Fatalf("%s: %v", k, err)
			}
			o = inner
		}
		return o
	}
	for k := range object(full) {
		keys = append(keys, k)
	}
	for k := range object(empty) {
		always = append(always, k)
	}
	return keys, always
}

// jsonKeys lists the keys encoding/json writes for struct type typ, with
// embedded structs flattened, and those of them it always writes.
func jsonKeys(typ reflect.Type) (keys, always []string) {
	for f := range typ.Fields() {
		tag := f.Tag.Get("json")
		name, opts, _ := strings.Cut(tag, ",")
		if tag == "-" {
			continue
		}
		if f.Anonymous && name == "" {
			et := f.Type
			if et.Kind() == reflect.Pointer {
				et = et.Elem()
			}
			if et.Kind() == reflect.Struct {
				k, a := jsonKeys(et)
				keys, always = append(keys, k...), append(always, a...)
				continue
			}
		}
		if !f.IsExported() {
			continue
		}
		if name == "" {
			name = f.Name
		}
		keys = append(keys, name)
		if !strings.Contains(opts, "omitempty") && !strings.Contains(opts, "omitzero") {
			always = append(always, name)
		}
	}
	return keys, always
}

// TestSchemaNoteCodes holds the codes of notes to one list: every NoteCode
// constant of diag/notes.go is in the schema's enum and in README.md's
// table of codes, and neither lists a code that is not a constant. A code
// added in Go alone, or renamed in one place, fails here.
func TestSchemaNoteCodes(t *testing.T) {
	f, err := parser.ParseFile(token.NewFileSet(), "diag/notes.go", nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	var consts []string
	for _, d := range f.Decls {
		g, ok := d.(*ast.GenDecl)
		if !ok || g.Tok != token.CONST {
			continue
		}
		for _, spec := range g.Specs {
			vs := spec.(*ast.ValueSpec)
			if id, ok := vs.Type.(*ast.Ident); !ok || id.Name != "NoteCode" {
				t.Errorf("constant %s of diag/notes.go is not a NoteCode", vs.Names[0])
				continue
			}
			for _, v := range vs.Values {
				code, err := strconv.Unquote(v.(*ast.BasicLit).Value)
				if err != nil {
					t.Fatal(err)
				}
				consts = append(consts, code)
			}
		}
	}
	kebab := regexp.MustCompile(`^[a-z]+(-[a-z]+)*$`)
	for _, c := range consts {
		if !kebab.MatchString(c) {
			t.Errorf("note code %q is not kebab-case", c)
		}
	}
	if len(consts) < 20 || len(slices.Compact(slices.Sorted(slices.Values(consts)))) != len(consts) {
		t.Fatalf("note codes %v: want every one once", consts)
	}

	var sch struct {
		Defs struct {
			Note struct {
				Properties struct {
					Code struct {
						Enum []string `json:"enum"`
					} `json:"code"`
				} `json:"properties"`
			} `json:"Note"`
		} `json:"$defs"`
	}
	if err := json.Unmarshal(schema.JSON, &sch); err != nil {
		t.Fatal(err)
	}
	readme, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	// The table headed "| code | given when |", to its first line that
	// is not a row.
	_, table, ok := bytes.Cut(readme, []byte("\n| code | given when |\n"))
	if !ok {
		t.Fatal("README.md has no table of note codes (| code | given when |)")
	}
	var documented []string
	row := regexp.MustCompile("^\\| `([a-z-]+)` \\|")
	for _, l := range strings.Split(string(table), "\n")[1:] {
		if !strings.HasPrefix(l, "|") {
			break
		}
		if m := row.FindStringSubmatch(l); m != nil {
			documented = append(documented, m[1])
		} else {
			t.Errorf("README.md's table of note codes: row %q names no code", l)
		}
	}
	want := slices.Sorted(slices.Values(consts))
	for name, got := range map[string][]string{
		"schema/tcpvet.schema.json $defs/Note code enum": sch.Defs.Note.Properties.Code.Enum,
		"README.md's table of note codes":                documented,
	} {
		if got := slices.Sorted(slices.Values(got)); !slices.Equal(got, want) {
			t.Errorf("%s lists %v; diag/notes.go has %v", name, got, want)
		}
	}
}
