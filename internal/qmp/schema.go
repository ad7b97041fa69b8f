package qmp

import (
	"encoding/json"
	"fmt"
	"sort"
	"strconv"
	"strings"
)

// Schema is QEMU's QAPI schema as its query-qmp-schema command returns it
// (qapi/introspect.json SchemaInfo): commands, events and the types they
// use, under masked type names. Tests load it from a real QEMU 7.2 and check
// godm's command table and replies against it.
type Schema struct {
	byName map[string]schemaInfo
}

type schemaInfo struct {
	Name     string `json:"name"`
	MetaType string `json:"meta-type"`
	// command, event
	ArgType string `json:"arg-type"`
	RetType string `json:"ret-type"`
	// builtin
	JSONType string `json:"json-type"`
	// enum
	Values []string `json:"values"`
	// array
	ElementType string `json:"element-type"`
	// object, alternate
	Members  []schemaMember  `json:"members"`
	Tag      string          `json:"tag"`
	Variants []schemaVariant `json:"variants"`
}

type schemaMember struct {
	Name    string           `json:"name"`
	Type    string           `json:"type"`
	Default *json.RawMessage `json:"default"` // present (even null): optional
}

func (m *schemaMember) UnmarshalJSON(b []byte) error {
	type plain schemaMember
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(b, &raw); err != nil {
		return err
	}
	if err := json.Unmarshal(b, (*plain)(m)); err != nil {
		return err
	}
	if d, ok := raw["default"]; ok {
		m.Default = &d
	}
	return nil
}

type schemaVariant struct {
	Case string `json:"case"`
	Type string `json:"type"`
}

// ParseSchema parses the "return" value of query-qmp-schema.
func ParseSchema(raw []byte) (*Schema, error) {
	var infos []schemaInfo
	if err := json.Unmarshal(raw, &infos); err != nil {
		return nil, fmt.Errorf("qmp schema: %w", err)
	}
	s := &Schema{byName: make(map[string]schemaInfo, len(infos))}
	for _, i := range infos {
		s.byName[i.Name] = i
	}
	return s, nil
}

// HasCommand reports whether the schema has the command.
func (s *Schema) HasCommand(name string) bool {
	i, ok := s.byName[name]
	return ok && i.MetaType == "command"
}

// kind is the JSON type a schema type takes on the wire: a builtin's
// json-type, "string" for enums, "array", "object", "value" for alternates.
func (s *Schema) kind(typ string) string {
	i := s.byName[typ]
	switch i.MetaType {
	case "builtin":
		return i.JSONType
	case "enum":
		return "string"
	case "array", "object":
		return i.MetaType
	case "alternate":
		return "value"
	}
	return "unknown type " + typ
}

// CheckCommand checks a table entry against the schema: a command marked
// Gone is absent; any other exists, takes every non-property argument
// listed with the JSON type and optionality given, has no mandatory
// argument the entry omits, takes no listed device property as a schema
// argument, and returns the kind of value listed.
func (s *Schema) CheckCommand(c Command) error {
	if c.Gone != "" {
		if s.HasCommand(c.Name) {
			return fmt.Errorf("%s: marked gone (%s) but QEMU has it", c.Name, c.Gone)
		}
		return nil
	}
	if !s.HasCommand(c.Name) {
		return fmt.Errorf("%s: not a command of QEMU's schema", c.Name)
	}
	cmd := s.byName[c.Name]
	members := map[string]schemaMember{}
	for _, m := range s.byName[cmd.ArgType].Members {
		members[m.Name] = m
	}
	listed := map[string]bool{}
	for _, a := range c.Args {
		listed[a.Name] = true
		m, ok := members[a.Name]
		if a.Prop {
			if ok {
				return fmt.Errorf("%s: %s is a schema argument, not a device property", c.Name, a.Name)
			}
			continue
		}
		if !ok {
			return fmt.Errorf("%s: QEMU has no argument %s", c.Name, a.Name)
		}
		if k := s.kind(m.Type); k != a.Type {
			return fmt.Errorf("%s: argument %s is %s in QEMU, %s in the table", c.Name, a.Name, k, a.Type)
		}
		if opt := m.Default != nil; opt != a.Optional {
			return fmt.Errorf("%s: argument %s optional=%v in QEMU, %v in the table", c.Name, a.Name, opt, a.Optional)
		}
	}
	for name, m := range members {
		if m.Default == nil && !listed[name] {
			return fmt.Errorf("%s: mandatory argument %s missing from the table", c.Name, name)
		}
	}
	ret := s.byName[cmd.RetType]
	got := s.kind(cmd.RetType)
	if ret.MetaType == "object" && len(ret.Members) == 0 && len(ret.Variants) == 0 {
		got = "" // no return value: {}
	}
	if got != c.Returns {
		return fmt.Errorf("%s: returns %q in QEMU, %q in the table", c.Name, got, c.Returns)
	}
	return nil
}

// CheckReturn checks a handler's result against the command's return type,
// as it goes on the wire (marshalled with encoding/json): every mandatory
// member present, no member the schema lacks, enums within their values,
// integers integral, flat unions by their tag.
func (s *Schema) CheckReturn(command string, result any) error {
	i, ok := s.byName[command]
	if !ok || i.MetaType != "command" {
		return fmt.Errorf("%s: not a command of QEMU's schema", command)
	}
	if result == nil {
		result = struct{}{}
	}
	return s.checkWire(command, "return", i.RetType, result)
}

// CheckEvent checks an event's data (nil for none) against the schema.
func (s *Schema) CheckEvent(event string, data any) error {
	i, ok := s.byName[event]
	if !ok || i.MetaType != "event" {
		return fmt.Errorf("%s: not an event of QEMU's schema", event)
	}
	if data == nil {
		data = struct{}{}
	}
	return s.checkWire(event, "data", i.ArgType, data)
}

func (s *Schema) checkWire(name, path, typ string, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	wire, err := decode(b)
	if err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	if err := s.check(path, typ, wire); err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	return nil
}

func (s *Schema) check(path, typ string, v any) error {
	i, ok := s.byName[typ]
	if !ok {
		return fmt.Errorf("%s: type %s missing from the schema", path, typ)
	}
	switch i.MetaType {
	case "builtin":
		return checkBuiltin(path, i.JSONType, v)
	case "enum":
		str, ok := v.(string)
		if !ok {
			return fmt.Errorf("%s: %v is not a string", path, v)
		}
		for _, e := range i.Values {
			if e == str {
				return nil
			}
		}
		return fmt.Errorf("%s: %q is not one of %q", path, str, i.Values)
	case "array":
		l, ok := v.([]any)
		if !ok {
			return fmt.Errorf("%s: %v is not an array", path, v)
		}
		for n, e := range l {
			if err := s.check(fmt.Sprintf("%s[%d]", path, n), i.ElementType, e); err != nil {
				return err
			}
		}
		return nil
	case "alternate":
		for _, m := range i.Members {
			if s.check(path, m.Type, v) == nil {
				return nil
			}
		}
		return fmt.Errorf("%s: %v matches no branch of an alternate", path, v)
	case "object":
		obj, ok := v.(map[string]any)
		if !ok {
			return fmt.Errorf("%s: %v is not an object", path, v)
		}
		members := append([]schemaMember(nil), i.Members...)
		if i.Tag != "" {
			tag, _ := obj[i.Tag].(string)
			for _, vr := range i.Variants {
				if vr.Case == tag {
					members = append(members, s.byName[vr.Type].Members...)
				}
			}
		}
		known := map[string]bool{}
		for _, m := range members {
			known[m.Name] = true
			mv, present := obj[m.Name]
			if !present {
				if m.Default == nil {
					return fmt.Errorf("%s: member %s is missing", path, m.Name)
				}
				continue
			}
			if err := s.check(path+"."+m.Name, m.Type, mv); err != nil {
				return err
			}
		}
		var extra []string
		for k := range obj {
			if !known[k] {
				extra = append(extra, k)
			}
		}
		if len(extra) > 0 {
			sort.Strings(extra)
			return fmt.Errorf("%s: member %s is not in the schema", path, extra[0])
		}
		return nil
	}
	return fmt.Errorf("%s: unknown meta-type %s", path, i.MetaType)
}

func checkBuiltin(path, jsonType string, v any) error {
	ok := false
	switch jsonType {
	case "string":
		_, ok = v.(string)
	case "boolean":
		_, ok = v.(bool)
	case "null":
		ok = v == nil
	case "object":
		_, ok = v.(map[string]any)
	case "value":
		ok = true
	case "number":
		_, ok = v.(json.Number)
	case "int":
		if n, isNum := v.(json.Number); isNum && !strings.ContainsAny(string(n), ".eE") {
			_, errI := strconv.ParseInt(string(n), 10, 64)
			_, errU := strconv.ParseUint(string(n), 10, 64)
			ok = errI == nil || errU == nil
		}
	}
	if !ok {
		return fmt.Errorf("%s: %v is not of JSON type %s", path, v, jsonType)
	}
	return nil
}
