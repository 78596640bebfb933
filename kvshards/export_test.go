package kvshards

import "encoding/binary"

// SetWriteHook lets the external tests stop a write half way (crash test).
func SetWriteHook(s *Store, f func(tmpPath string)) { s.writeHook = f }

// BlockExtent exposes block i's padded byte range for damage tests.
func BlockExtent(data []byte, i int) (off, end int64) {
	_, lay, err := parseHeader(data)
	if err != nil {
		panic(err)
	}
	return lay.block(i)
}

// FixHeaderChecksum rewrites the header checksum after a fuzz target edited
// header fields, so the parser's later checks are reached.
func FixHeaderChecksum(data []byte) {
	if len(data) < fixedSize {
		return
	}
	h := int64(binary.LittleEndian.Uint32(data[offHeaderSize:]))
	if h < fixedSize || h > int64(len(data)) {
		return
	}
	binary.LittleEndian.PutUint64(data[offHeaderSum:], headerChecksum(data[:h]))
}
