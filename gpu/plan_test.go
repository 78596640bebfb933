package gpu

import (
	"fmt"
	"strings"
	"testing"

	"cacheclip/model"
)

// qwen7B is Qwen2.5-7B's shape (config.json of the release); the plan's
// tests and the device benchmarks use it.
func qwen7B() model.Config {
	return model.Config{Arch: "qwen2", Hidden: 3584, Intermediate: 18944, Layers: 28, Heads: 28, KVHeads: 4, HeadDim: 128,
		Vocab: 152064, MaxPos: 32768, RMSEps: 1e-6, RopeTheta: 1e6, QKVBias: true}
}

func cfgOf(c model.Config) *model.Config { return &c }

func TestPlanMemoryWeights(t *testing.T) {
	// Qwen2.5-7B has 7.62e9 parameters (untied embeddings); in bf16 that is
	// 15.2e9 bytes, give or take the f32 norms and biases.
	p := PlanMemory(cfgOf(qwen7B()), 1, 4096, 0, 0)
	if p.Weights < 15.0e9 || p.Weights > 15.5e9 {
		t.Fatalf("weights %d bytes, want about 15.2e9", p.Weights)
	}
	// KV: 4096 slots × 28 layers × (K and V) × 512 wide × f32.
	if want := uint64(4096 * 28 * 2 * 512 * 4); p.KV != want {
		t.Fatalf("KV %d, want %d", p.KV, want)
	}
	if p.Total() != p.Weights+p.KV+p.Workspace+p.ShardCache+p.Reserve {
		t.Fatal("total is not the sum of the parts")
	}
	if PlanMemory(cfgOf(qwen7B()), 8, 4096, 0, 0).KV != 8*p.KV {
		t.Fatal("KV does not scale with the batch")
	}
	if PlanMemory(cfgOf(qwen7B()), 1, 0, 0, 0).SlotsEach != 32768 {
		t.Fatal("slots <= 0 does not default to MaxPos")
	}
}

func TestPlanMemoryCheck(t *testing.T) {
	const gb = 1 << 30
	cases := []struct {
		name      string
		batch     int
		cache     uint64
		free      uint64
		ok        bool
		mentions  []string
		forbidden []string
	}{
		{"fits on an 80 GB card", 8, 8 * gb, 79 * gb, true, nil, nil},
		{"batch too large", 96, 0, 79 * gb, false, []string{"lower batch_size (now 96) to at most", "79.00 GiB is free"}, []string{"device_cache"}},
		{"cache too large", 8, 60 * gb, 79 * gb, false, []string{"lower device_cache (now 60.00 GiB)", "lower batch_size"}, nil},
		{"weights do not fit", 1, 0, 10 * gb, false, []string{"weights alone do not fit"}, []string{"batch_size"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p := PlanMemory(cfgOf(qwen7B()), c.batch, 8192, 0, c.cache)
			err := p.Check(c.free)
			if (err == nil) != c.ok {
				t.Fatalf("Check(%d GiB) = %v, want ok=%v (plan total %s)", c.free/gb, err, c.ok, gib(p.Total()))
			}
			for _, m := range c.mentions {
				if !strings.Contains(err.Error(), m) {
					t.Errorf("error %q lacks %q", err, m)
				}
			}
			for _, m := range c.forbidden {
				if err != nil && strings.Contains(err.Error(), m) {
					t.Errorf("error %q mentions %q", err, m)
				}
			}
		})
	}
}

// The suggested batch size must fit: re-planning with it passes Check.
func TestPlanMemorySuggestionFits(t *testing.T) {
	for _, free := range []uint64{20 << 30, 40 << 30, 79 << 30} {
		p := PlanMemory(cfgOf(qwen7B()), 256, 8192, 0, 0)
		err := p.Check(free)
		if err == nil {
			t.Fatalf("batch 256 fits in %d bytes", free)
		}
		var n int
		s := err.Error()
		i := strings.Index(s, "to at most ")
		if i < 0 {
			t.Fatalf("no suggestion in %q", s)
		}
		if _, e := fmtSscan(s[i+len("to at most "):], &n); e != nil {
			t.Fatal(e)
		}
		if e := PlanMemory(cfgOf(qwen7B()), n, 8192, 0, 0).Check(free); e != nil {
			t.Fatalf("suggested batch %d does not fit %d bytes: %v", n, free, e)
		}
		if e := PlanMemory(cfgOf(qwen7B()), n+1, 8192, 0, 0).Check(free); e == nil {
			t.Fatalf("batch %d+1 also fits: suggestion %d is not the largest", n, n)
		}
	}
}

func TestDefaultDeviceCache(t *testing.T) {
	p := PlanMemory(cfgOf(qwen7B()), 4, 8192, 0, 0)
	free := uint64(79 << 30)
	c := p.DefaultDeviceCache(free)
	p2 := PlanMemory(cfgOf(qwen7B()), 4, 8192, 0, c)
	if err := p2.Check(free); err != nil {
		t.Fatalf("default cache %s does not fit: %v", gib(c), err)
	}
	if c == 0 || p.DefaultDeviceCache(p.Total()-p.ShardCache) != 0 {
		t.Fatalf("default cache %d; with no room left it must be 0", c)
	}
}

func fmtSscan(s string, n *int) (int, error) { return fmt.Sscan(s, n) }
