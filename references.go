package plinth

// ReferencedEntity returns the entity whose key a top-level field of e
// holds, or nil: the entity the field's `references:` names, or, without
// one, the entity called <name> when the field is named <name>Id, has that
// entity's key type and no constraint of its own (format, pattern, enum,
// min, max). Dummy data makes such references join, and obfuscation maps
// them exactly as the key, so they still join.
func ReferencedEntity(domains []*Domain, e *Entity, f *Field) *Entity {
	keyType := map[Type]KeyType{TypeUUID: KeyUUID, TypeInteger: KeyInteger, TypeString: KeyText}
	var found *Entity
	for _, d := range domains {
		for _, r := range d.Entities {
			switch {
			case r == nil || len(r.Fields) == 0:
			case f.References != "":
				if r.Plural == f.References {
					found = r
				}
			case r != e && f.Name == r.Name+"Id" && keyType[f.Type] == r.Key.Type &&
				f.Format == "" && f.Pattern == nil && len(f.Enum) == 0 && f.Min == nil && f.Max == nil:
				found = r
			}
		}
	}
	return found
}
