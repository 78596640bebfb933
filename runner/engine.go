package runner

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"cacheclip/gpu"
	"cacheclip/jobs"
	"cacheclip/kvshards"
	"cacheclip/kvshards/s3store"
	"cacheclip/loader"
	"cacheclip/methods"
	"cacheclip/model"
	"cacheclip/prefill"
	"cacheclip/prefill/auxscore"

	"golang.org/x/sync/errgroup"
)

// Engine is a job's engine: the primary model (and the auxiliary for
// cacheclip) on a backend, the method, and chunk caches from a shard store
// (write-through unless disabled) or, without a store, computed and kept in
// memory. NewEngine builds it from a jobs.Spec; it is the runner's Stages, and
// Query answers one question outside a batch job (cacheclip answer).
type Engine struct {
	spec      jobs.Spec
	log       *slog.Logger
	primary   *loader.Bundle
	aux       *loader.Bundle
	prefiller *prefill.Prefiller
	method    prefill.Method
	scorer    *auxscore.Scorer
	store     shardStore
	local     *kvshards.Store // the store, or the local tier of a remote one
	remote    *s3store.Store
	computer  *prefill.Computer
	prefix    []int32
	// dev and gm are the CUDA device and the primary model's weights on it;
	// nil when the job runs on the CPU. The auxiliary model always stays on
	// the CPU: it scores batch k+1 in its own stage while the device prefills
	// batch k.
	dev    *gpu.Device
	gm     *gpu.Model
	device string
}

var _ Stages = (*Engine)(nil)

type workState struct {
	lay    prefill.Layout
	q      prefill.Query
	scores []float32 // budget=adaptive: the auxiliary's scores, until Allocate selects
	maxNew int       // slots after the prompt: answer tokens, or the label trie's nodes
	labels *labelState
}

// NewEngine builds a job's engine from its spec: it resolves the device, loads
// the primary model (spec.Model, spec.Template) and, for cacheclip, the
// auxiliary (spec.Aux, method_params aux_template), opens the shard store
// (spec.Store) and sets up the method with its parameters. Every command that
// runs the methods (run, answer, eval, demo) builds its engine here. An error
// is a bad setting or an unusable model or store: nothing has run. Close
// releases what it holds.
func NewEngine(ctx context.Context, spec jobs.Spec, log *slog.Logger) (*Engine, error) {
	if log == nil {
		log = slog.Default()
	}
	return newEngine(ctx, spec, log, gpu.Select)
}

// selectFunc resolves --device to a CUDA device or nil for the CPU
// (gpu.Select; tests pass a fake).
type selectFunc func(ctx context.Context, spec gpu.DeviceSpec, log *slog.Logger) (*gpu.Device, error)

func newEngine(ctx context.Context, spec jobs.Spec, log *slog.Logger, sel selectFunc) (*Engine, error) {
	ds, err := gpu.ParseDevice(spec.Device)
	if err != nil {
		return nil, err
	}
	// The device is resolved before the model loads: an explicit cuda request
	// on a machine without one fails at once, naming the missing library or
	// device.
	dev, err := sel(ctx, ds, log)
	if err != nil {
		return nil, err
	}
	p, err := loader.OpenWith(spec.Model, loader.Options{Template: spec.Template, Weights: spec.Weights})
	if err != nil {
		if dev != nil {
			dev.Close()
		}
		return nil, fmt.Errorf("primary model: %w", err)
	}
	if p.Note != "" {
		log.Info("primary model", "weights", p.Note)
	}
	e := &Engine{spec: spec, log: log, primary: p, dev: dev, device: "cpu"}
	fail := func(err error) (*Engine, error) { e.Close(); return nil, err }
	if e.prefix, err = p.PrefixIDs(); err != nil {
		return fail(fmt.Errorf("primary model: prefix: %w", err))
	}
	var primary model.Backend = p.Model
	if dev != nil {
		if primary, err = e.upload(ctx, p.Model); err != nil {
			return fail(err)
		}
	} else {
		// Packed now rather than in the first question's forward: its memory
		// is taken before any work, and no question's timing carries it.
		p.Model.Pack()
	}
	e.prefiller = &prefill.Prefiller{Model: primary, Layouter: p}
	if spec.Store != "" {
		opts := kvshards.DefaultOptions()
		opts.Logger = log
		opts.CacheBytes = hostCacheBytes(spec.HostCacheMB, readMemAvailable)
		log.Info("shard store host cache", "mib", opts.CacheBytes>>20, "set", spec.HostCacheMB > 0)
		if err := e.openStore(ctx, opts); err != nil {
			return fail(fmt.Errorf("shard store: %w", err))
		}
		e.computer = &prefill.Computer{Model: e.prefiller.Model}
		e.prefiller.Source = &prefill.StoreSource{Store: e.local, Computer: e.computer, ReadOnly: !spec.WriteThrough}
	}
	cfg, err := methods.Default().Resolve(spec.Method, spec.Ratio, spec.MethodParams)
	if err != nil {
		return fail(err)
	}
	e.method = prefill.Method{Config: cfg}
	if cfg.Entry.NeedsAux {
		if spec.Aux == "" {
			return fail(fmt.Errorf("method %s needs --aux (an auxiliary model directory)", cfg.Name()))
		}
		a, err := loader.OpenWith(spec.Aux, loader.Options{Template: cfg.Values.String("aux_template"), Weights: spec.Weights})
		if err != nil {
			return fail(fmt.Errorf("auxiliary model: %w", err))
		}
		if a.Note != "" {
			log.Info("auxiliary model", "weights", a.Note)
		}
		e.aux = a
		a.Model.Pack()
		opts := auxscore.Options{Reduce: cfg.Values.String("reduce"), Window: cfg.Values.Int("window"), MinCount: cfg.Values.Int("min_count")}
		e.scorer = &auxscore.Scorer{Model: a.Model, Layouter: a, Opts: opts}
		if mode := cfg.Values.String("aux_mode"); mode == "cached" || mode == "boundary" {
			// The auxiliary model reuses its own per-chunk caches: from the
			// store when there is one (its local tier for an s3:// store: they
			// are cheap to compute and not shared), else computed once and
			// kept in memory.
			if mode == "boundary" {
				e.scorer.Boundary = cfg.Values.Int("aux_boundary")
			}
			comp := &prefill.Computer{Model: e.scorer.Model}
			switch {
			case e.store != nil && !spec.WriteThrough:
				e.scorer.Source = &readOnlyAux{store: &prefill.StoreSource{Store: e.local, Computer: comp, ReadOnly: true}, comp: comp, log: log}
			case e.store != nil:
				e.scorer.Source = &prefill.StoreSource{Store: e.local, Computer: comp}
			default:
				e.scorer.Source = prefill.NewMemorySource(comp)
			}
		}
		e.method.Selector = e.scorer
	}
	if err := e.method.Validate(e.prefiller.Model.ModelConfig().Layers); err != nil {
		return fail(err)
	}
	return e, nil
}

// Query prefills one question with the job's method and decodes its answer
// (spec.MaxNewTokens tokens at most), outside the batch stages.
func (e *Engine) Query(ctx context.Context, q prefill.Query) (*prefill.Answer, error) {
	return e.prefiller.Answer(ctx, q, e.method, model.GenOptions{MaxNewTokens: e.spec.MaxNewTokens, StopIDs: e.primary.Stops}, e.primary.Tok)
}

// shardStore is the engine's view of a shard store: a local directory
// (kvshards.Store) or object storage behind a local tier (s3store.Store).
type shardStore interface {
	Open(ctx context.Context, k kvshards.Key, want kvshards.Expect) (*kvshards.Shard, error)
	GetOrBuild(ctx context.Context, c kvshards.Computer, prefix, chunk []int32) (*kvshards.Shard, error)
	Close() error
}

// openStore opens spec.Store: a directory, or s3://bucket/prefix with its
// local tier (spec.StoreCache, bounded by spec.StoreCacheMiB).
func (e *Engine) openStore(ctx context.Context, opts kvshards.Options) error {
	if !s3store.IsURL(e.spec.Store) {
		st, err := kvshards.OpenStore(e.spec.Store, opts)
		if err != nil {
			return err
		}
		e.store, e.local = st, st
		return nil
	}
	loc, err := s3store.ParseURL(e.spec.Store)
	if err != nil {
		return err
	}
	dir := e.spec.StoreCache
	if dir == "" {
		if dir, err = s3store.DefaultCacheDir(loc); err != nil {
			return err
		}
	}
	rs, err := s3store.Open(ctx, e.spec.Store, s3store.Options{Config: s3store.FromEnv(), CacheDir: dir,
		CacheMaxBytes: int64(e.spec.StoreCacheMiB) << 20, Local: opts, Logger: e.log})
	if err != nil {
		return err
	}
	e.store, e.local, e.remote = rs, rs.Local(), rs
	e.log.Info("shard store on object storage", "store", loc.String(), "tier", dir, "conditional_create", rs.Conditional())
	return nil
}

// upload checks the job's GPU memory plan against the device's free memory
// and, when it fits, puts the primary model's weights on the device. The plan
// assumes every question of a batch at the model's longest context, the
// bound Plan enforces per question.
func (e *Engine) upload(ctx context.Context, cpu *model.Model) (*gpu.Model, error) {
	free, _, err := e.dev.MemInfo()
	if err != nil {
		return nil, fmt.Errorf("device %s: %w", e.dev.Name, err)
	}
	plan := gpu.PlanMemory(&cpu.Config, e.spec.BatchSize, 0, 0, uint64(e.spec.DeviceCacheMB)<<20)
	if e.spec.DeviceCacheMB == 0 {
		plan.ShardCache = plan.DefaultDeviceCache(free)
	}
	if err := plan.Check(free); err != nil {
		return nil, &jobs.ConfigError{Err: fmt.Errorf("device %s: %w", e.dev.Name, err)}
	}
	gm, err := gpu.Upload(ctx, e.dev, cpu)
	if err != nil {
		return nil, fmt.Errorf("device %s: upload of the primary model: %w", e.dev.Name, err)
	}
	e.gm = gm
	e.device = fmt.Sprintf("cuda:%d (%s)", e.dev.Ordinal, e.dev.Name)
	e.log.Info("primary model on the GPU", "device", e.device, "weights_gib", float64(gm.WeightBytes())/(1<<30),
		"planned_gib", float64(plan.Total())/(1<<30), "free_gib", float64(free)/(1<<30), "device_cache_mib", plan.ShardCache>>20)
	return gm, nil
}

// defaultHostCache caps the host shard cache a job gets when it sets none.
const defaultHostCache = 4 << 30

// hostCacheBytes is the shard store's host cache: mib MiB when set, else a
// quarter of the memory the kernel reports available (the models, the
// questions' caches and other jobs need the rest), at most 4 GiB, at least
// 256 MiB; 4 GiB when available memory cannot be read.
func hostCacheBytes(mib int, memAvailable func() (int64, error)) int64 {
	if mib > 0 {
		return int64(mib) << 20
	}
	avail, err := memAvailable()
	if err != nil || avail <= 0 {
		return defaultHostCache
	}
	return min(max(avail/4, 256<<20), defaultHostCache)
}

// readMemAvailable reads MemAvailable from /proc/meminfo, in bytes.
func readMemAvailable() (int64, error) {
	b, err := os.ReadFile("/proc/meminfo")
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "MemAvailable:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), 10, 64)
			if err != nil {
				return 0, fmt.Errorf("/proc/meminfo: MemAvailable: %w", err)
			}
			return kb << 10, nil
		}
	}
	return 0, fmt.Errorf("/proc/meminfo: no MemAvailable line")
}

// Device names where the primary model runs: "cpu" or "cuda:N (name)". It is
// recorded in every output row and in stats.json.
func (e *Engine) Device() string { return e.device }

// Close releases models and the store.
func (e *Engine) Close() error {
	if e.store != nil {
		e.store.Close()
	}
	if e.aux != nil {
		e.aux.Close()
	}
	if e.primary != nil {
		e.primary.Close()
	}
	if e.gm != nil {
		e.gm.Close()
	}
	if e.dev != nil {
		e.dev.Close()
	}
	return nil
}

// Plan tokenises the question's layout and checks it fits the model.
func (e *Engine) Plan(ctx context.Context, w *Work) error {
	if e.spec.Task == jobs.TaskLabel {
		return e.planLabels(w)
	}
	lay, err := e.primary.Layout(w.Texts, w.Q.Question)
	if err != nil {
		return fmt.Errorf("layout: %w", err)
	}
	maxNew := w.Q.MaxNewTokens
	if maxNew <= 0 {
		maxNew = e.spec.MaxNewTokens
	}
	if lim := e.prefiller.Model.ModelConfig().MaxPos; lay.Len()+maxNew > lim {
		return fmt.Errorf("context too long: prompt of %d tokens (%d in %d chunks) plus max_new_tokens %d exceeds the model's limit of %d",
			lay.Len(), lay.ContextTokens(), len(lay.Chunks), maxNew, lim)
	}
	w.State = &workState{lay: lay, q: prefill.Query{Chunks: w.Texts, Question: w.Q.Question}, maxNew: maxNew}
	return nil
}

// Load brings every chunk's cache in ahead of the primary (building missing
// shards when write-through), so that assembly finds them in the host cache.
func (e *Engine) Load(ctx context.Context, w *Work) error {
	if e.store == nil {
		return nil // computed at assembly and memoised by the engine
	}
	st := w.State.(*workState)
	fp := e.prefiller.Model.Fingerprint()
	want := kvshards.Expect{Fingerprint: fp, PrefixHash: kvshards.PrefixHash(e.prefix)}
	// A remote store's shards are fetched in parallel (object-store latency,
	// not bandwidth, bounds one fetch); the load stage runs ahead of the
	// primary by spec.Prefetch batches, so the fetches of upcoming batches
	// overlap the current batch's compute.
	par := 1
	if e.remote != nil {
		par = 4
	}
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(par)
	for i, c := range st.lay.Chunks {
		g.Go(func() error {
			// Map (and verify) the shard into the store's host cache without decoding
			// it: assembly decodes straight into the question's cache slots.
			var sh *kvshards.Shard
			var err error
			if e.spec.WriteThrough {
				sh, err = e.store.GetOrBuild(gctx, e.computer, e.prefix, c.IDs)
			} else {
				sh, err = e.store.Open(gctx, kvshards.KeyOf(fp, e.prefix, c.IDs), want)
			}
			if err != nil {
				return fmt.Errorf("chunk %q: %w", w.Q.ChunkIDs[i], err)
			}
			return sh.Close()
		})
	}
	return g.Wait()
}

// Score makes CacheClip's selection with the auxiliary model.
func (e *Engine) Score(ctx context.Context, w *Work) error {
	if e.scorer == nil {
		return nil
	}
	st := w.State.(*workState)
	t0 := time.Now()
	if e.adaptive() {
		// The budget is known once the whole batch is scored (Allocate).
		sc, err := e.scorer.PrimaryScores(ctx, st.q, st.lay)
		if err != nil {
			return fmt.Errorf("auxiliary scoring: %w", err)
		}
		st.scores = sc
		st.q.AuxTime = time.Since(t0)
		return nil
	}
	sel, err := e.scorer.Select(ctx, st.q, st.lay, e.method.Budget(st.lay.ContextTokens()))
	if err != nil {
		return fmt.Errorf("auxiliary scoring: %w", err)
	}
	st.q.Selection = sel
	st.q.AuxTime = time.Since(t0)
	return nil
}

// readOnlyAux serves the auxiliary's chunk caches (aux_mode=cached) from a
// store the job may not write (write_through: false): a shard found there is
// used; a missing one, or one the store cannot use (damaged, of an older
// format), is computed for the question and not kept, so a job never fails
// its rows for want of auxiliary shards that `shards build` (which builds the
// primary's) did not write or that went bad.
type readOnlyAux struct {
	store *prefill.StoreSource
	comp  *prefill.Computer
	log   *slog.Logger
	// logged holds the keys (kvshards.Key) of the unusable shards already
	// logged: a shard used by every question is logged once, not per row.
	logged sync.Map
}

func (s *readOnlyAux) Fingerprint() [32]byte { return s.store.Fingerprint() }

// Shard maps the stored shard (prefill.ShardSource). A missing or unusable
// one is kvshards.ErrNotFound, on which assembly falls back to Chunk; an
// unusable one's key and cause are logged once.
func (s *readOnlyAux) Shard(ctx context.Context, prefix, chunk []int32) (*kvshards.Shard, error) {
	sh, err := s.store.Shard(ctx, prefix, chunk)
	if err == nil || errors.Is(err, kvshards.ErrNotFound) || ctx.Err() != nil {
		return sh, err
	}
	key := kvshards.KeyOf(s.store.Fingerprint(), prefix, chunk)
	if _, seen := s.logged.LoadOrStore(key, struct{}{}); !seen {
		s.log.Warn("auxiliary shard unusable in the read-only store: computing its chunk for each question instead", "key", key.String(), "err", err)
	}
	return nil, fmt.Errorf("%w: unusable: %w", kvshards.ErrNotFound, err)
}

// Chunk computes the chunk. Assembly asks for it only after Shard found no
// usable shard, so it does not go back to the store: a second lookup would
// count the same miss twice in shard_cache_misses and fail on the same
// unusable shard.
func (s *readOnlyAux) Chunk(ctx context.Context, prefix, chunk []int32) (*kvshards.ChunkKV, error) {
	return s.comp.ComputeChunk(ctx, prefix, chunk)
}

// adaptive says the job spreads its budget over each batch (budget=adaptive).
func (e *Engine) adaptive() bool {
	return e.scorer != nil && e.method.Values.String("budget") == "adaptive"
}

// Allocate implements Allocator: with budget=adaptive it spreads the batch's
// Σ⌈r·N⌉ recomputed tokens over the batch's scored questions by the spread of
// the auxiliary's attention (auxscore.Allocate), then makes each question's
// selection at its share. The batch is the runner's: batch_size questions in
// read order, less the ones that failed before scoring, so the budgets depend
// on the batch alone, never on other batches or shards.
func (e *Engine) Allocate(ctx context.Context, batch []*Work) error {
	if !e.adaptive() {
		return nil
	}
	t0 := time.Now()
	var live []*workState
	var fixed, n []int
	var spread []float64
	for _, w := range batch {
		if w.Err != nil {
			continue
		}
		st := w.State.(*workState)
		if st.scores == nil {
			continue
		}
		live = append(live, st)
		c := st.lay.ContextTokens()
		n = append(n, c)
		fixed = append(fixed, e.method.Budget(c))
		spread = append(spread, auxscore.Spread(st.scores))
	}
	budgets, err := auxscore.Allocate(fixed, n, spread)
	if err != nil {
		return err
	}
	// The allocation's cost is the batch's: each question is charged its share.
	share := time.Since(t0) / time.Duration(max(1, len(live)))
	for i, st := range live {
		t1 := time.Now()
		sel, err := e.scorer.SelectScores(st.scores, budgets[i])
		if err != nil {
			return err
		}
		st.q.Selection, st.q.Allocated, st.scores = sel, true, nil
		st.q.AuxTime += share + time.Since(t1)
	}
	return nil
}

// prefillBatch prefills the batch's questions with the job's method (their
// recomputed rows share forward calls: prefill.PrefillBatch) and records each
// one's prefill figures. A failed question is marked on its Work and has a nil
// result; only a cancelled context is returned as an error.
func (e *Engine) prefillBatch(ctx context.Context, batch []*Work) ([]*prefill.Result, error) {
	items := make([]prefill.Item, len(batch))
	for i, w := range batch {
		st := w.State.(*workState)
		items[i] = prefill.Item{Query: st.q, Layout: st.lay, Reserve: st.maxNew}
	}
	results, errs := e.prefiller.PrefillBatch(ctx, items, e.method)
	if err := ctx.Err(); err != nil {
		for _, res := range results {
			if res != nil {
				res.Cache.Free()
			}
		}
		return nil, err
	}
	for i, w := range batch {
		res := results[i]
		if errs[i] != nil {
			w.Fail(errs[i])
			continue
		}
		r := &w.Result
		r.NContextTokens = int32(res.Stats.ContextTokens)
		r.NRecomputed = int32(res.Stats.RecomputedTokens)
		// Load and aux ran in their own stages (the runner times them): what
		// is left is the question's own part of the prefill (assembly, a
		// selection the method makes inside the call, and its share of the
		// forward call it shared with the batch). A selection made ahead
		// cost nothing here.
		r.PrefillMS = ms(res.Stats.Own)
		if e.spec.Diagnostics {
			// Now, before decoding or label scoring: those replace Logits and the
			// forward pass may reuse the buffer behind them.
			r.FirstLogProbs = logSoftmax(res.Logits)
		}
	}
	return results, nil
}

// Answer prefills each question with the method, then decodes all of them
// together (one batched forward call per step).
func (e *Engine) Answer(ctx context.Context, batch []*Work) error {
	if e.spec.Task == jobs.TaskLabel {
		return e.answerLabels(ctx, batch)
	}
	results, err := e.prefillBatch(ctx, batch)
	if err != nil {
		return err
	}
	var gens []*model.GenState
	var owners []*Work
	for i, w := range batch {
		st := w.State.(*workState)
		res := results[i]
		if res == nil {
			continue
		}
		gens = append(gens, &model.GenState{Cache: res.Cache, NextPos: res.NextPos, Logits: res.Logits, Tok: e.primary.Tok, Groups: res.Groups,
			Opts: model.GenOptions{MaxNewTokens: st.maxNew, StopIDs: e.primary.Stops}})
		owners = append(owners, w)
	}
	if len(gens) == 0 {
		return nil
	}
	defer func() {
		for _, g := range gens {
			g.Cache.Free()
		}
	}()
	t0 := time.Now()
	if err := e.prefiller.Model.Generate(ctx, gens); err != nil {
		return err
	}
	// The batch decodes together: each question is charged the batch's decode time.
	dec := ms(time.Since(t0))
	for i, g := range gens {
		r := &owners[i].Result
		r.Answer = g.Text
		r.NGenerated = int32(len(g.IDs))
		if e.spec.Diagnostics {
			// g.IDs already lacks the stop token, as g.Text does.
			r.AnswerIDs = slices.Clone(g.IDs)
		}
		r.DecodeMS = dec
	}
	return nil
}

// logSoftmax is log(softmax(logits)) in natural log, computed in float64 with
// the maximum subtracted so that large logits neither overflow nor lose the
// small probabilities; the result is a new slice.
func logSoftmax(logits []float32) []float32 {
	if len(logits) == 0 {
		return nil
	}
	m := math.Inf(-1)
	for _, x := range logits {
		m = max(m, float64(x))
	}
	var sum float64
	for _, x := range logits {
		sum += math.Exp(float64(x) - m)
	}
	lse := m + math.Log(sum)
	out := make([]float32, len(logits))
	for i, x := range logits {
		out[i] = float32(float64(x) - lse)
	}
	return out
}

// Counters are the shard store's cache counters.
func (e *Engine) Counters() map[string]int64 {
	if e.store == nil {
		return nil
	}
	s := e.local.Stats()
	m := map[string]int64{"shard_cache_hits": s.CacheHits, "shard_cache_misses": s.CacheMisses,
		"shard_cache_bytes": s.CacheBytes, "shards_built": s.Built, "shard_bytes_built": s.BuiltBytes,
		"shard_evictions": s.Evictions, "shards_corrupt": s.Corrupt}
	if e.remote != nil {
		r := e.remote.Stats()
		m["shards_built"], m["shard_bytes_built"] = r.Built, r.BuiltBytes
		m["shard_downloads"], m["shard_download_bytes"] = r.Downloads, r.DownloadBytes
		m["shard_uploads"], m["shard_upload_bytes"] = r.Uploads, r.UploadBytes
		m["shard_uploads_present"], m["shard_uploads_pending"] = r.UploadsPresent, r.Pending
		m["shards_remote_corrupt"], m["shards_remote_replaced"] = r.RemoteCorrupt, r.Replaced
		m["shard_tier_evictions"] = r.Evictions
	}
	return m
}
