// Package schema holds the JSON Schema (draft 2020-12) of the document
// tcpvet --json prints and the live view exports, tcpvet.schema.json, and
// of the sweep tcpvet --all-netns --json prints, node.schema.json (whose
// objects are tcpvet.schema.json's), for tests and tools to validate
// output against. It is strict where that helps a consumer: every key
// tcpvet always writes is required, states, timers, severities, rule names
// and note codes are enums, and the objects tcpvet owns admit no other
// keys, so a field added to the output without the schema fails the
// schema test.
package schema

import _ "embed"

// JSON is tcpvet.schema.json.
//
//go:embed tcpvet.schema.json
var JSON []byte

// ID is the schema's $id, the URL to load it under.
const ID = "https://github.com/tcpvet/tcpvet/schema/tcpvet.schema.json"

// Node is node.schema.json, which refers to tcpvet.schema.json by $ref.
//
//go:embed node.schema.json
var Node []byte

// NodeID is node.schema.json's $id.
const NodeID = "https://github.com/tcpvet/tcpvet/schema/node.schema.json"
