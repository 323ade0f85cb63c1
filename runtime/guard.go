package runtime

import (
	"fmt"
	"reflect"
	goruntime "runtime"
	"sync/atomic"
	"time"
	"unsafe"

	"go.starlark.net/starlark"
	"go.starlark.net/starlarkstruct"
)

// A run's resources are bounded three ways (spec/replay.md, "Limits"):
//
//   - steps and builtin calls, counted exactly (LimitError "steps",
//     "calls");
//   - memory: the Starlark values a run holds — its variables, the values
//     they reach, its closures and module globals — measured by walking
//     them, with strings shared by several values counted once (LimitError
//     "memory");
//   - computation between builtin calls, in wall-clock time, so that one
//     step that does a lot of work (a replace over a large string) is
//     bounded too (LimitError "compute").
//
// The guard checks at step checkpoints (every checkpointSteps steps) and
// walks the run's values only when the Go heap has been collected since
// its last walk: a run whose data grows makes the heap grow, which makes
// the collector run. A walk is also never more than a small fraction of
// the run's time (walkBudget). Values still being built on the
// interpreter's operand stack (a list comprehension that has not
// finished) are not visible until they are assigned; the process-wide
// guards (GOMEMLIMIT, quarantine after repeated crashes) cover the rest.

// checkpointSteps is how often, in Starlark steps, the guard looks.
const checkpointSteps = 256

// walkBudget bounds the share of a run's time spent walking its values.
const walkBudget = 0.02

// gcCycles counts completed garbage collections, via a cleanup that
// re-arms itself: one atomic load tells a checkpoint whether the heap was
// collected since it last looked.
var gcCycles atomic.Uint64

type gcSentinel struct {
	_ *int
	_ [48]byte
}

func armGCSentinel() {
	s := new(gcSentinel)
	goruntime.AddCleanup(s, func(struct{}) {
		gcCycles.Add(1)
		armGCSentinel()
	}, struct{}{})
}

func init() { armGCSentinel() }

// guard enforces a run's step, memory and compute limits for one
// execution. It lives on the executing goroutine, but for its compute
// timer, which fires on another and only cancels the thread.
type guard struct {
	r         *run
	maxSteps  uint64
	maxMemory int64
	maxCmp    time.Duration

	lastGC   uint64    // gcCycles at the last walk
	nextWalk time.Time // no walk before this (walkBudget)
	peak     int64     // the largest size measured

	timer   *time.Timer
	compute atomic.Bool // the compute timer fired
}

func newGuard(r *run, thread *starlark.Thread) *guard {
	g := &guard{r: r, maxSteps: r.cur.started.Limits.MaxSteps, maxMemory: r.cur.started.Limits.MaxMemory, maxCmp: r.cur.started.Limits.MaxCompute}
	if g.maxSteps == 0 {
		g.maxSteps = r.rt.opts.MaxSteps
	}
	if g.maxMemory == 0 {
		g.maxMemory = r.rt.opts.MaxMemory
	}
	if g.maxCmp == 0 {
		g.maxCmp = r.rt.opts.MaxCompute
	}
	g.lastGC = gcCycles.Load()
	if g.maxMemory > 0 {
		thread.SetMaxExecutionSteps(min(g.maxSteps, checkpointSteps))
	} else {
		thread.SetMaxExecutionSteps(g.maxSteps)
	}
	thread.OnMaxSteps = g.checkpoint
	if g.maxCmp > 0 {
		g.timer = time.AfterFunc(g.maxCmp, func() {
			g.compute.Store(true)
			thread.Cancel("compute limit")
		})
	}
	return g
}

// checkpoint runs every checkpointSteps steps, on the executing goroutine.
func (g *guard) checkpoint(th *starlark.Thread) {
	if th.Steps >= g.maxSteps {
		g.r.setFatal(&LimitError{Limit: "steps", Max: g.maxSteps, Pos: callerPos(th, 0)})
		th.Cancel("too many steps")
		return
	}
	th.SetMaxExecutionSteps(min(g.maxSteps, th.Steps+checkpointSteps))
	if g.maxMemory <= 0 {
		return
	}
	if gc := gcCycles.Load(); gc != g.lastGC {
		g.lastGC = gc
		g.measure(th)
	}
}

// measure walks the run's values and stops the run if they are over its
// limit.
func (g *guard) measure(th *starlark.Thread) {
	now := time.Now()
	if now.Before(g.nextWalk) {
		return
	}
	size := g.size(th)
	g.peak = max(g.peak, size)
	took := time.Since(now)
	g.nextWalk = now.Add(time.Duration(float64(took) / walkBudget))
	if size > g.maxMemory {
		g.r.setFatal(&LimitError{Limit: "memory", Max: uint64(g.maxMemory), Used: size, Pos: callerPos(th, 0)})
		th.Cancel("memory limit")
	}
}

// size walks what the thread's frames, closures and modules reach.
func (g *guard) size(th *starlark.Thread) int64 {
	z := &sizer{seen: map[uintptr]struct{}{}, limit: g.maxMemory}
	for _, m := range g.r.modules {
		if m != nil {
			for _, v := range m.globals {
				z.value(v)
			}
		}
	}
	for d := 0; d < th.CallStackDepth(); d++ {
		fr := th.DebugFrame(d)
		z.value(fr.Callable())
		for i := 0; i < fr.NumLocals(); i++ {
			_, v := fr.Local(i)
			z.value(v)
		}
	}
	return z.total
}

// pause stops the compute timer while a builtin call runs; resume starts
// it again for the computation that follows.
func (g *guard) pause() {
	if g != nil && g.timer != nil {
		g.timer.Stop()
	}
}

func (g *guard) resume() {
	if g != nil && g.timer != nil && !g.compute.Load() {
		g.timer.Reset(g.maxCmp)
	}
}

func (g *guard) stop() {
	if g != nil && g.timer != nil {
		g.timer.Stop()
	}
}

// tripped reports whether the compute timer fired.
func (g *guard) tripped() bool { return g != nil && g.compute.Load() }

// exceeded reports the compute limit, if its timer fired.
func (g *guard) exceeded(pos string) *LimitError {
	if g == nil || !g.compute.Load() {
		return nil
	}
	return &LimitError{Limit: "compute", Max: uint64(g.maxCmp), Pos: pos}
}

// sizer adds up the memory values hold, counting what is shared once.
type sizer struct {
	seen  map[uintptr]struct{}
	total int64
	limit int64 // stop early past this
}

// Rough costs of value headers, in bytes.
const (
	sizeWord   = 16 // an interface value in a slot
	sizeList   = 48
	sizeDict   = 64
	sizeEntry  = 48
	sizeStruct = 64
)

func (z *sizer) once(p unsafe.Pointer) bool {
	if p == nil {
		return false
	}
	k := uintptr(p)
	if _, ok := z.seen[k]; ok {
		return false
	}
	z.seen[k] = struct{}{}
	return true
}

func (z *sizer) value(v starlark.Value) {
	if z.total > z.limit {
		return
	}
	switch x := v.(type) {
	case nil, starlark.NoneType, starlark.Bool, starlark.Float:
	case starlark.Int:
		if _, ok := x.Int64(); !ok {
			z.total += int64(x.BigInt().BitLen()/8) + sizeWord
		}
	case starlark.String:
		z.str(unsafe.Pointer(unsafe.StringData(string(x))), len(x))
	case starlark.Bytes:
		z.str(unsafe.Pointer(unsafe.StringData(string(x))), len(x))
	case starlark.Tuple:
		if len(x) == 0 || !z.once(unsafe.Pointer(unsafe.SliceData(x))) {
			return
		}
		z.total += int64(len(x)) * sizeWord
		for _, e := range x {
			z.value(e)
		}
	case *starlark.List:
		if !z.once(unsafe.Pointer(x)) {
			return
		}
		z.total += sizeList + int64(x.Len())*sizeWord
		for e := range x.Elements() {
			z.value(e)
		}
	case *starlark.Dict:
		if !z.once(unsafe.Pointer(x)) {
			return
		}
		z.total += sizeDict + int64(x.Len())*sizeEntry
		for k, e := range x.Entries() {
			z.value(k)
			z.value(e)
		}
	case *starlark.Set:
		if !z.once(unsafe.Pointer(x)) {
			return
		}
		z.total += sizeDict + int64(x.Len())*sizeEntry
		for e := range x.Elements() {
			z.value(e)
		}
	case *starlarkstruct.Struct:
		if !z.once(unsafe.Pointer(x)) {
			return
		}
		names := x.AttrNames()
		z.total += sizeStruct + int64(len(names))*sizeEntry
		for _, n := range names {
			f, _ := x.Attr(n)
			z.value(f)
		}
	case *starlark.Function:
		if !z.once(unsafe.Pointer(x)) {
			return
		}
		for i := 0; i < x.NumFreeVars(); i++ {
			_, f := x.FreeVar(i)
			z.value(f)
		}
		for i := 0; i < x.NumParams(); i++ {
			z.value(x.ParamDefault(i))
		}
	case *starlark.Builtin:
		z.value(x.Receiver())
	default:
		if c, ok := cellValue(v); ok {
			z.value(c)
		}
	}
}

// str counts a string's bytes, once per backing array for large ones
// (["x" * 1000000] * 1000 holds one megabyte, not a gigabyte).
func (z *sizer) str(p unsafe.Pointer, n int) {
	if n >= 256 && !z.once(p) {
		return
	}
	z.total += int64(n) + sizeWord
}

// cellValue reads the value in a local that a closure captured: the
// interpreter keeps such locals in an unexported cell type, whose one field
// is the value.
func cellValue(v starlark.Value) (starlark.Value, bool) {
	if v == nil || reflect.TypeOf(v).String() != "*starlark.cell" {
		return nil, false
	}
	type eface struct {
		typ  unsafe.Pointer
		data unsafe.Pointer
	}
	p := (*eface)(unsafe.Pointer(&v)).data
	if p == nil {
		return nil, false
	}
	return *(*starlark.Value)(p), true
}

// formatBytes renders a byte count for messages.
func formatBytes(n int64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.1f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d bytes", n)
}
