package deid

import (
	"embed"
	"fmt"
)

//go:embed profiles/*.yaml
var profileFS embed.FS

// Profile returns an embedded profile by name: "safe-harbor" (the default:
// dates shifted per patient, free text only where provably not
// identifying), "safe-harbor-strict" (dates generalized to their year) or
// "safe-harbor-text" (as safe-harbor, but free text is kept scrubbed by
// clean).
func Profile(name string) (*Config, error) {
	switch name {
	case "safe-harbor", "safe-harbor-strict", "safe-harbor-text":
	default:
		return nil, fmt.Errorf("%w: unknown profile %q", ErrInvalidConfig, name)
	}
	data, err := profileFS.ReadFile("profiles/" + name + ".yaml")
	if err != nil {
		return nil, fmt.Errorf("read profile %s: %w", name, err)
	}
	return ParseConfig(data)
}

// SafeHarbor returns the default profile, profiles/safe-harbor.yaml: the
// 18 HIPAA Safe Harbor identifiers and free text. Each call returns a new
// Config.
func SafeHarbor() *Config {
	c, err := Profile("safe-harbor")
	if err != nil {
		panic(err) // the embedded profile is tested
	}
	return c
}

// ProfileNames lists the embedded profiles.
func ProfileNames() []string {
	return []string{"safe-harbor", "safe-harbor-strict", "safe-harbor-text"}
}
