package builtins

import (
	"context"
	"crypto/sha256"
	"encoding/binary"

	"github.com/google/uuid"
	"go.starlark.net/lib/time"
	"go.starlark.net/starlark"

	"github.com/starflow/starflow/runtime"
)

// Reproducible returns Standard with now, uuid and random made
// reproducible for testing: uuid and random are derived from the call's
// step, and now reads the runtime's clock (set it to a fixed start, with
// SkipWaits). Two executions of a script then see the same values at the
// same steps whether or not they crashed in between, so `starflow test` can
// compare their results. Never use it in production.
func Reproducible() []*runtime.Builtin {
	out := Standard()
	for i, b := range out {
		switch b.Name {
		case "uuid":
			out[i] = &runtime.Builtin{Name: "uuid", Doc: b.Doc, Fn: func(ctx context.Context, c *runtime.Call) (starlark.Value, error) {
				if err := c.Unpack(); err != nil {
					return nil, err
				}
				sum := sha256.Sum256([]byte("uuid\x00" + c.Step))
				id, err := uuid.FromBytes(sum[:16])
				if err != nil {
					return nil, err
				}
				id[6] = (id[6] & 0x0f) | 0x40 // version 4
				id[8] = (id[8] & 0x3f) | 0x80 // RFC 4122 variant
				return starlark.String(id.String()), nil
			}}
		case "random":
			out[i] = &runtime.Builtin{Name: "random", Doc: b.Doc, Fn: func(ctx context.Context, c *runtime.Call) (starlark.Value, error) {
				if err := c.Unpack(); err != nil {
					return nil, err
				}
				sum := sha256.Sum256([]byte("random\x00" + c.Step))
				return starlark.Float(float64(binary.BigEndian.Uint64(sum[:8])>>11) / (1 << 53)), nil
			}}
		case "now":
			out[i] = &runtime.Builtin{Name: "now", Doc: b.Doc, Fn: func(ctx context.Context, c *runtime.Call) (starlark.Value, error) {
				if err := c.Unpack(); err != nil {
					return nil, err
				}
				return time.Time(c.Now().UTC()), nil
			}}
		}
	}
	return out
}
