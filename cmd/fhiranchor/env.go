package main

import (
	"fmt"
	"reflect"
	"strconv"
	"strings"
	"time"
)

// envPrefix starts the environment variable of every config key.
const envPrefix = "FHIRANCHOR_"

// envNotKeys are config keys without a generic environment variable:
// database.url has FHIRANCHOR_DATABASE_URL already, read with the secrets
// (it may hold a password) in loadConfig, with the same meaning.
var envNotKeys = map[string]bool{"database.url": true}

// envName is the environment variable that overrides a config key: the key
// in upper case, dots and dashes as underscores, after FHIRANCHOR_
// (anchor.max_delay: FHIRANCHOR_ANCHOR_MAX_DELAY).
func envName(key string) string {
	return envPrefix + strings.ToUpper(strings.NewReplacer(".", "_", "-", "_").Replace(key))
}

// envKeys lists the config keys environment variables may override, with
// the field each sets: every scalar key and auth.keys (comma-separated).
// Secrets are not keys (they come from their own variables or files).
func envKeys(c *config) map[string]reflect.Value {
	keys := map[string]reflect.Value{}
	var walk func(v reflect.Value, prefix string)
	walk = func(v reflect.Value, prefix string) {
		t := v.Type()
		for i := range t.NumField() {
			f := t.Field(i)
			tag, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
			if !f.IsExported() || tag == "" || tag == "-" {
				continue
			}
			key := prefix + tag
			if f.Type.Kind() == reflect.Struct && f.Type != reflect.TypeFor[time.Time]() {
				walk(v.Field(i), key+".")
				continue
			}
			if !envNotKeys[key] {
				keys[key] = v.Field(i)
			}
		}
	}
	walk(reflect.ValueOf(c).Elem(), "")
	return keys
}

// applyEnv sets the config keys whose environment variables are set
// (non-empty): they win over the file, and flags win over them.
func applyEnv(c *config, getenv func(string) string) error {
	for key, field := range envKeys(c) {
		name := envName(key)
		s := getenv(name)
		if s == "" {
			continue
		}
		if err := setField(field, s); err != nil {
			// The value is not secret, but it is not echoed either: the
			// variable's name says enough.
			return fmt.Errorf("config: %s (%s): %w", name, key, err)
		}
	}
	return nil
}

func setField(f reflect.Value, s string) error {
	switch {
	case f.Type() == reflect.TypeFor[time.Duration]():
		d, err := time.ParseDuration(s)
		if err != nil {
			return fmt.Errorf("not a duration such as 10s or 2m")
		}
		f.SetInt(int64(d))
		return nil
	case f.Kind() == reflect.String:
		f.SetString(s)
	case f.Kind() == reflect.Bool:
		b, err := strconv.ParseBool(s)
		if err != nil {
			return fmt.Errorf("not true or false")
		}
		f.SetBool(b)
	case f.CanInt():
		n, err := strconv.ParseInt(s, 10, f.Type().Bits())
		if err != nil {
			return fmt.Errorf("not an integer")
		}
		f.SetInt(n)
	case f.CanUint():
		n, err := strconv.ParseUint(s, 10, f.Type().Bits())
		if err != nil {
			return fmt.Errorf("not a non-negative integer")
		}
		f.SetUint(n)
	case f.CanFloat():
		n, err := strconv.ParseFloat(s, 64)
		if err != nil {
			return fmt.Errorf("not a number")
		}
		f.SetFloat(n)
	case f.Kind() == reflect.Slice && f.Type().Elem().Kind() == reflect.String:
		var list []string
		for _, p := range strings.Split(s, ",") {
			if p = strings.TrimSpace(p); p != "" {
				list = append(list, p)
			}
		}
		f.Set(reflect.ValueOf(list))
	default:
		return fmt.Errorf("cannot be set from the environment")
	}
	return nil
}
