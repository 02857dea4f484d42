package ui

import (
	"reflect"
	"strings"

	"github.com/tcpvet/tcpvet/diag"
)

type field struct {
	name  string
	value any
}

// tcpInfoFields lists every tcp_info field under its JSON name, in the
// kernel's order; those past what an older kernel sent read 0.
func tcpInfoFields(info *diag.TCPInfo) []field {
	v := reflect.ValueOf(*info)
	t := v.Type()
	out := make([]field, 0, t.NumField())
	for i := range t.NumField() {
		name, _, _ := strings.Cut(t.Field(i).Tag.Get("json"), ",")
		if name == "size" {
			continue
		}
		out = append(out, field{name, v.Field(i).Interface()})
	}
	return out
}
