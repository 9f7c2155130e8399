// Package strictyaml decodes YAML the way spillway's configuration files
// must be read: strictly (an unknown field, a duplicate key, a value of the
// wrong type, a second document or a number that is not finite is an
// error that names the line), bounded in size, and onto the defaults of
// the type decoded into (absent fields keep them; an explicit 0 is 0).
//
// The functions hold no state and are safe for concurrent use.
package strictyaml

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math"
	"os"

	"go.yaml.in/yaml/v3"
)

// MaxFileSize bounds a configuration file. Larger files are refused before
// they are parsed.
const MaxFileSize = 1 << 20

// Decode strictly decodes one YAML document from data into v. An empty
// document leaves v unchanged. A number that is not finite (.nan, .inf,
// -.inf) is refused wherever it appears, with its line: no setting of
// spillway's takes one, and a NaN slips through every range check.
func Decode(data []byte, v any) error {
	if len(data) > MaxFileSize {
		return fmt.Errorf("config is %d bytes, more than the %d allowed", len(data), MaxFileSize)
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err == nil {
		if err := checkFinite(&doc); err != nil {
			return fmt.Errorf("decode: %w", err)
		}
	} // a syntax error is reported by the strict decode below
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(v); err != nil {
		if errors.Is(err, io.EOF) {
			return nil // empty document
		}
		return fmt.Errorf("decode: %w", err)
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		if err != nil {
			return fmt.Errorf("decode: %w", err)
		}
		return fmt.Errorf("decode: line %d: a second YAML document is not allowed", extra.Line)
	}
	return nil
}

// checkFinite walks a document and refuses float scalars that are NaN or
// infinite.
func checkFinite(n *yaml.Node) error {
	if n.Kind == yaml.ScalarNode && n.ShortTag() == "!!float" {
		var f float64
		if err := n.Decode(&f); err == nil && (math.IsNaN(f) || math.IsInf(f, 0)) {
			return fmt.Errorf("line %d: %s: must be a finite number", n.Line, n.Value)
		}
	}
	for _, c := range n.Content {
		if err := checkFinite(c); err != nil {
			return err
		}
	}
	return nil
}

// Parse decodes data strictly onto def (the defaults: absent fields keep
// them, an explicit 0 is 0), resolves the derived defaults and validates,
// in that order.
func Parse[T any, PT interface {
	*T
	Resolve()
	Validate() error
}](data []byte, def T) (*T, error) {
	v := def
	if err := Decode(data, &v); err != nil {
		return nil, err
	}
	PT(&v).Resolve()
	if err := PT(&v).Validate(); err != nil {
		return nil, err
	}
	return &v, nil
}

// ReadFile reads a configuration file, refusing one larger than
// MaxFileSize.
func ReadFile(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("read config: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, MaxFileSize+1))
	if err != nil {
		return nil, fmt.Errorf("read config %s: %w", path, err)
	}
	if len(data) > MaxFileSize {
		return nil, fmt.Errorf("read config %s: larger than %d bytes", path, MaxFileSize)
	}
	return data, nil
}
