package ui

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"github.com/tcpvet/tcpvet/rules"
)

// TestExportIsTheDocument: the export key writes the document --json
// writes on a terminal, byte for byte, and WriteJSON streams what
// json.Encoder would write.
func TestExportIsTheDocument(t *testing.T) {
	dir := t.TempDir()
	exportWith(t, dir, 80, 24)
	files, _ := filepath.Glob(filepath.Join(dir, "tcpvet-*.json"))
	if len(files) != 1 {
		t.Fatalf("want one export in %s, got %v", dir, files)
	}
	got, err := os.ReadFile(files[0])
	if err != nil {
		t.Fatal(err)
	}
	snap := fixture()
	doc := Document{snap, rules.Evaluate(snap, nil)}
	var want bytes.Buffer
	if err := doc.WriteIndentedJSON(&want); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want.Bytes()) {
		t.Errorf("export differs from the indented document:\n%s\nwant\n%s", got, want.Bytes())
	}
	var enc, stream bytes.Buffer
	if err := json.NewEncoder(&enc).Encode(doc); err != nil {
		t.Fatal(err)
	}
	if err := doc.WriteJSON(&stream); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(enc.Bytes(), stream.Bytes()) {
		t.Errorf("WriteJSON differs from json.Encoder:\n%s\nwant\n%s", stream.Bytes(), enc.Bytes())
	}
}
