package spec_test

import (
	"bytes"
	"testing"
)

// Every placeholder of openapi_static.json is filled.
func TestOpenAPIStaticPlaceholdersFilled(t *testing.T) {
	for name, ds := range map[string]int{"none": 0, "one": 1, "all": 3} {
		all := openAPIAll(t)
		raw, _ := openAPIDoc(t, all[:ds])
		if i := bytes.Index(raw, []byte("${")); i >= 0 {
			t.Errorf("%s: a placeholder is left: %s", name, raw[i:min(len(raw), i+40)])
		}
	}
}
