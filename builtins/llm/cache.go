package llm

import (
	"context"
	"encoding/json"
	"time"
)

// Two kinds of entries live in the KV beside the journals:
//
//	llm/cache/<request digest>  the latest successful answer to a request,
//	                            served (degraded) when every tier fails
//	llm/idem/<call key>         the answer obtained for one call, so that a
//	                            call re-executed after a crash (it was in
//	                            flight, its result not yet journaled) gets
//	                            it without asking a provider again
//
// Neither holds keys. Writes are best effort: a cache that cannot be
// written never fails a call.

type cacheEntry struct {
	Digest   string    `json:"digest"`
	StoredAt time.Time `json:"stored_at"`
	Result   *Result   `json:"result"`
}

const (
	cachePrefix = "llm/cache/"
	idemPrefix  = "llm/idem/"
)

// remember stores a successful answer under its request digest and its
// call key.
func (m *Module) remember(cc *callCtx, a *alias, key, digest string, res *Result, env *callEnv) {
	if m.kv == nil || res.Refused {
		return
	}
	ctx := context.WithoutCancel(cc)
	b, err := json.Marshal(cacheEntry{Digest: digest, StoredAt: cc.now().UTC(), Result: res})
	if err != nil {
		return
	}
	if a.cfg.CacheTTL > 0 && !res.Degraded {
		if err := m.kv.PutKV(ctx, cachePrefix+digest, b, a.cfg.CacheTTL); err != nil {
			env.log.Warn().Err(err).Msg("llm: cannot write the response cache")
		}
	}
	if key != "" {
		ttl := m.cfg.Cache.IdempotencyTTL
		if ttl <= 0 {
			ttl = DefaultIdempotencyTTL
		}
		if err := m.kv.PutKV(ctx, idemPrefix+key, b, ttl); err != nil {
			env.log.Warn().Err(err).Msg("llm: cannot record the answer under its call key")
		}
	}
}

func (m *Module) load(ctx context.Context, k string) *cacheEntry {
	if m.kv == nil {
		return nil
	}
	b, ok, err := m.kv.GetKV(context.WithoutCancel(ctx), k)
	if err != nil || !ok {
		return nil
	}
	var e cacheEntry
	if json.Unmarshal(b, &e) != nil || e.Result == nil {
		return nil
	}
	return &e
}

// idempotent returns the answer already obtained for this call key, if the
// request is the same.
func (m *Module) idempotent(ctx context.Context, key, digest string) *Result {
	if m.kv == nil {
		return nil
	}
	e := m.load(ctx, idemPrefix+key)
	if e == nil || e.Digest != digest {
		return nil
	}
	return e.Result
}

// cachedAnswer returns the latest answer to the same request, if caching
// is on for the alias.
func (m *Module) cachedAnswer(ctx context.Context, a *alias, digest string) *Result {
	if a.cfg.CacheTTL <= 0 {
		return nil
	}
	e := m.load(ctx, cachePrefix+digest)
	if e == nil || e.Digest != digest {
		return nil
	}
	return e.Result
}
