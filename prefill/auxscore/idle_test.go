package auxscore

import (
	"testing"

	"cacheclip/model"
)

// idleCaches hands a put cache back to the next get that fits in it (the
// same memory, emptied), and allocates when none fits.
func TestIdleCachesReuse(t *testing.T) {
	m := build(t, "qwen2")
	var idle idleCaches
	kc, err := idle.get(m, 40)
	if err != nil {
		t.Fatal(err)
	}
	first, ok := kc.(*model.Cache)
	if !ok {
		t.Fatalf("get on a host model returned %T, want *model.Cache", kc)
	}
	if first.Cap() < 40 {
		t.Fatalf("new cache has %d slots, want at least 40", first.Cap())
	}
	if _, err := first.Alloc(40); err != nil {
		t.Fatal(err)
	}
	idle.put(first)
	for _, n := range []int{40, 12} {
		kc, err := idle.get(m, n)
		if err != nil {
			t.Fatal(err)
		}
		if kc != model.KVCache(first) {
			t.Fatalf("get(%d) after put: a new cache, want the idle one back", n)
		}
		if kc.Len() != 0 {
			t.Fatalf("get(%d): reused cache holds %d slots, want it emptied", n, kc.Len())
		}
		idle.put(kc)
	}
	// Too small for the next question: dropped, and a new cache allocated.
	kc, err = idle.get(m, first.Cap()+1)
	if err != nil {
		t.Fatal(err)
	}
	if kc == model.KVCache(first) || kc.(*model.Cache).Cap() < first.Cap()+1 {
		t.Fatalf("get(%d) returned the idle cache of %d slots, want a new one", first.Cap()+1, first.Cap())
	}
	idle.put(kc)
	if len(idle.caches) != 1 {
		t.Fatalf("%d idle caches after one was dropped and one put, want 1", len(idle.caches))
	}
}
