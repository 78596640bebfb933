package kvshards

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
)

// Key addresses a shard: SHA-256 over the model fingerprint, the prefix hash and
// the chunk tokens. Because PrefixHash is itself collision resistant, this is a
// hash of (fingerprint, prefix tokens, chunk tokens), and a loader can recompute
// it from the shard's own header and token block.
type Key [32]byte

// Domain strings keep keys and prefix hashes from ever colliding with each
// other or with hashes of other cacheclip objects.
const (
	keyDomain    = "cacheclip/kvshards/key/v1\x00"
	prefixDomain = "cacheclip/kvshards/prefix/v1\x00"
)

// String is the 64-character lower-case hex form used in file names.
func (k Key) String() string { return hex.EncodeToString(k[:]) }

// ParseKey accepts the 64-character hex form.
func ParseKey(s string) (Key, error) {
	var k Key
	if len(s) != 2*len(k) {
		return k, fmt.Errorf("shard key %q: want %d hex characters, got %d", s, 2*len(k), len(s))
	}
	if _, err := hex.Decode(k[:], []byte(s)); err != nil {
		return k, fmt.Errorf("shard key %q: %w", s, err)
	}
	return k, nil
}

func hashTokens(domain string, extra [][]byte, toks []int32) [32]byte {
	h := sha256.New()
	h.Write([]byte(domain))
	for _, e := range extra {
		h.Write(e)
	}
	var b [4]byte
	binary.LittleEndian.PutUint32(b[:], uint32(len(toks)))
	h.Write(b[:])
	buf := make([]byte, 0, 4*min(len(toks), 1024))
	for i, t := range toks {
		buf = binary.LittleEndian.AppendUint32(buf, uint32(t))
		if len(buf) == cap(buf) || i == len(toks)-1 {
			h.Write(buf)
			buf = buf[:0]
		}
	}
	var out [32]byte
	h.Sum(out[:0])
	return out
}

// PrefixHash identifies the shared prompt prefix P a chunk was computed after.
// The empty prefix has a hash too (the prefix's own shard is stored under it).
func PrefixHash(prefix []int32) [32]byte { return hashTokens(prefixDomain, nil, prefix) }

// KeyOf is the content address of chunk computed after prefix by the model
// with fingerprint fp.
func KeyOf(fp [32]byte, prefix, chunk []int32) Key {
	ph := PrefixHash(prefix)
	return keyFromHashes(fp, ph, chunk)
}

// PrefixKey is the key of the prefix's own cache: the prefix stored as a chunk
// after an empty prefix, at base position 0.
func PrefixKey(fp [32]byte, prefix []int32) Key { return KeyOf(fp, nil, prefix) }

// KeyFromPrefixHash is KeyOf with the prefix already hashed, for loops over
// many chunks after one long prefix.
func KeyFromPrefixHash(fp, prefixHash [32]byte, chunk []int32) Key {
	return keyFromHashes(fp, prefixHash, chunk)
}

func keyFromHashes(fp, prefixHash [32]byte, chunk []int32) Key {
	return Key(hashTokens(keyDomain, [][]byte{fp[:], prefixHash[:]}, chunk))
}
