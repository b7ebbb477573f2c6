package config

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/pflag"
	"go.yaml.in/yaml/v3"
)

// FileFlag is the flag, and FileEnv the variable, naming the configuration
// file; DefaultFile is read when neither is given, and may be missing.
const (
	FileFlag    = "config"
	FileEnv     = "PLINTH_CONFIG"
	DefaultFile = "plinth.yaml"
)

// AddFlags declares on fl the --config flag and the flags of the settings
// named in only, or of every setting when only is empty (serve). Settings
// without a flag on a command still come from the file and the
// environment. It panics on a name no setting has: that is a programming
// error, and a flag silently missing would be worse.
func AddFlags(fl *pflag.FlagSet, only ...string) {
	v := reflect.ValueOf(Default())
	t := v.Type()
	fl.String(FileFlag, DefaultFile, "configuration file ("+FileEnv+"); a missing default file is fine")
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		name, usage := f.Tag.Get("flag"), f.Tag.Get("usage")+" ("+f.Tag.Get("env")+")"
		if name == "" || len(only) > 0 && !slices.Contains(only, name) {
			continue
		}
		switch val := v.Field(i).Interface().(type) {
		case time.Duration:
			fl.Duration(name, val, usage)
		case string:
			fl.String(name, val, usage)
		case bool:
			fl.Bool(name, val, usage)
		case int:
			fl.Int(name, val, usage)
		case int64:
			fl.Int64(name, val, usage)
		}
	}
	for _, name := range only {
		if fl.Lookup(name) == nil {
			panic("config.AddFlags: no setting has the flag --" + name)
		}
	}
}

// Load layers the defaults, the configuration file, the PLINTH_*
// environment variables and the flags of fl that were set, and checks the
// result. fl may be nil (a binary without flags, such as the Lambda
// authorizer): then only the file and the environment apply.
func Load(fl *pflag.FlagSet) (Config, error) {
	cfg := Default()
	cfg.set = map[string]bool{}
	path, explicit := filePath(fl)
	if err := cfg.readFile(path, explicit); err != nil {
		return cfg, err
	}
	if err := cfg.applyEnvAndFlags(fl); err != nil {
		return cfg, err
	}
	return cfg, cfg.Check()
}

// filePath is the configuration file to read, and whether the user named
// it (then it must exist): --config, else PLINTH_CONFIG, else plinth.yaml.
func filePath(fl *pflag.FlagSet) (path string, explicit bool) {
	path = DefaultFile
	if fl != nil && fl.Lookup(FileFlag) != nil {
		path, _ = fl.GetString(FileFlag)
		if fl.Changed(FileFlag) {
			return path, true
		}
	}
	if p := os.Getenv(FileEnv); p != "" {
		return p, true
	}
	return path, false
}

// readFile decodes the file at path into c, refusing unknown keys so that
// a misspelt setting is reported rather than ignored.
func (c *Config) readFile(path string, explicit bool) error {
	data, err := os.ReadFile(path)
	switch {
	case errors.Is(err, fs.ErrNotExist) && !explicit:
		return nil
	case err != nil:
		return fmt.Errorf("reading configuration: %w", err)
	}
	dec := yaml.NewDecoder(strings.NewReader(string(data)))
	dec.KnownFields(true)
	if err := dec.Decode(c); err != nil && !errors.Is(err, io.EOF) {
		return fmt.Errorf("%s: %s", path, strings.TrimPrefix(err.Error(), "yaml: "))
	}
	var keys map[string]any
	_ = yaml.Unmarshal(data, &keys) // it decoded above, so this does too
	for k := range keys {
		c.set[k] = true
	}
	return nil
}

// applyEnvAndFlags sets every setting that has a flag from its environment
// variable, then from its flag when that was given.
func (c *Config) applyEnvAndFlags(fl *pflag.FlagSet) error {
	v := reflect.ValueOf(c).Elem()
	t := v.Type()
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		name, env := f.Tag.Get("flag"), f.Tag.Get("env")
		if name == "" {
			continue
		}
		if raw, ok := os.LookupEnv(env); ok {
			if err := setFromString(v.Field(i), raw); err != nil {
				return fmt.Errorf("environment variable %s: %w", env, err)
			}
			c.set[f.Tag.Get("yaml")] = true
		}
		if fl != nil && fl.Changed(name) {
			if err := setFromString(v.Field(i), fl.Lookup(name).Value.String()); err != nil {
				return fmt.Errorf("flag --%s: %w", name, err)
			}
			c.set[f.Tag.Get("yaml")] = true
		}
	}
	return nil
}

func setFromString(field reflect.Value, raw string) error {
	if field.Type() == reflect.TypeOf(time.Duration(0)) {
		d, err := time.ParseDuration(raw)
		if err != nil {
			return fmt.Errorf("%q is not a duration such as 30s or 720h", raw)
		}
		field.SetInt(int64(d))
		return nil
	}
	switch field.Kind() {
	case reflect.String:
		field.SetString(raw)
	case reflect.Bool:
		b, err := strconv.ParseBool(raw)
		if err != nil {
			return fmt.Errorf("%q is not true or false", raw)
		}
		field.SetBool(b)
	case reflect.Int, reflect.Int64:
		n, err := strconv.ParseInt(raw, 10, 64)
		if err != nil {
			return fmt.Errorf("%q is not an integer", raw)
		}
		field.SetInt(n)
	}
	return nil
}
