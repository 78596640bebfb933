//go:build !purego

#include "textflag.h"

// prefetchRows(p *float32, rows, stride, n int)
// Prefetches the first n bytes of rows rows, stride bytes apart from p, one
// PREFETCHT0 per 64-byte line. A prefetch never faults, so the addresses
// need not be mapped.
TEXT ·prefetchRows(SB), NOSPLIT, $0-32
	MOVQ p+0(FP), SI
	MOVQ rows+8(FP), CX
	MOVQ stride+16(FP), DX
	MOVQ n+24(FP), BX
	TESTQ CX, CX
	JLE pfdone
	TESTQ BX, BX
	JLE pfdone
pfrow:
	XORQ AX, AX
pfline:
	PREFETCHT0 (SI)(AX*1)
	ADDQ $64, AX
	CMPQ AX, BX
	JLT pfline
	ADDQ DX, SI
	DECQ CX
	JNZ pfrow
pfdone:
	RET
