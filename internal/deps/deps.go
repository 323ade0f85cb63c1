//go:build tools

// Package deps pins modules that packages under construction will import,
// so parallel work does not race on go.mod. Removed once all are imported.
package deps

import (
	_ "github.com/goccy/go-yaml"
	_ "github.com/hashicorp/go-retryablehttp"
	_ "github.com/prometheus/client_golang/prometheus"
	_ "github.com/rogpeppe/go-internal/testscript"
	_ "github.com/santhosh-tekuri/jsonschema/v6"
	_ "github.com/sony/gobreaker/v2"
	_ "golang.org/x/sys/unix"
	_ "golang.org/x/time/rate"
)
