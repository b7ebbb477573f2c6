package main

import (
	"slices"

	"github.com/spf13/cobra"

	"github.com/plinth-data/plinth"
	"github.com/plinth-data/plinth/config"
)

// Config is Plinth's configuration. It lives in package config, which
// every binary shares; the alias keeps the commands' code unchanged.
type Config = config.Config

func defaultConfig() Config { return config.Default() }

// storeFlags are the flags of the commands that open the store.
var storeFlags = []string{"data-dir", "store", "domains"}

// with returns the flag names of base followed by more.
func with(base []string, more ...string) []string {
	return append(slices.Clip(base), more...)
}

// addConfigFlags declares on cmd the flags of the settings it reads: those
// named in only, or every one (serve) when only is empty.
func addConfigFlags(cmd *cobra.Command, only ...string) {
	config.AddFlags(cmd.Flags(), only...)
}

// loadConfig layers defaults, the config file, the environment and the
// flags of cmd that were set.
func loadConfig(cmd *cobra.Command) (Config, error) {
	cfg, err := config.Load(cmd.Flags())
	if err == nil && cmd.Context() != nil {
		cmd.SetContext(withEnvironment(cmd.Context(), cfg.Environment))
	}
	return cfg, err
}

// splitList splits a comma-separated list, dropping blanks.
var splitList = config.SplitList

// loadConfigAndDomains is loadConfig, then the domain specs it names.
func loadConfigAndDomains(cmd *cobra.Command) (Config, []*plinth.Domain, error) {
	cfg, err := loadConfig(cmd)
	if err != nil {
		return cfg, nil, err
	}
	ds, err := loadDomains(cfg.Domains)
	return cfg, ds, err
}

// loadDomains loads the specs in dir, or the shipped ones when dir is empty.
func loadDomains(dir string) ([]*plinth.Domain, error) { return config.LoadDomains(dir) }
