package runtime_test

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"

	"go.starlark.net/starlark"

	"github.com/starflow/starflow/internal/runtest"
	"github.com/starflow/starflow/runtime"
)

var bg = context.Background()

var newEnv = runtest.New

func failingBuiltin(name string, failures int, errFor func(n int) error) (*runtime.Builtin, *atomic.Int64) {
	var calls atomic.Int64
	b := &runtime.Builtin{
		Name: name,
		Fn: func(ctx context.Context, c *runtime.Call) (starlark.Value, error) {
			n := int(calls.Add(1))
			if n <= failures {
				return nil, errFor(n)
			}
			return starlark.String(fmt.Sprintf("ok after %d", n)), nil
		},
	}
	return b, &calls
}

var errBoom = errors.New("boom")
