//go:build !purego

#include "textflag.h"

// One-row products over weights in panel layout (panels.go): out[0:32] (+)=
// Σ_t x[t] · W[t][0:32], W one panel of k rows of 32 values, 32·size bytes
// apart. A lone decode step reads each panel once, front to back: four steps
// of t per round into four accumulator pairs (Z0–Z7), so eight FMAs are in
// flight against the FMA latency, and the weights are widened in registers
// (bf16: zero-extend and shift; f16: VCVTPH2PS), never written back.
//
// func gemvPanelF32AVX512(k int, w *float32, x *float32, out *float32, acc int)
// func gemvPanelBF16AVX512(k int, w *uint16, x *float32, out *float32, acc int)
// func gemvPanelF16AVX512(k int, w *uint16, x *float32, out *float32, acc int)

#define GPZERO \
	VPXORD Z0, Z0, Z0; VPXORD Z1, Z1, Z1; VPXORD Z2, Z2, Z2; VPXORD Z3, Z3, Z3; \
	VPXORD Z4, Z4, Z4; VPXORD Z5, Z5, Z5; VPXORD Z6, Z6, Z6; VPXORD Z7, Z7, Z7

// GPDONE folds the accumulator pairs, adds out when acc != 0 and stores.
#define GPDONE \
	VADDPS Z2, Z0, Z0; VADDPS Z4, Z0, Z0; VADDPS Z6, Z0, Z0; \
	VADDPS Z3, Z1, Z1; VADDPS Z5, Z1, Z1; VADDPS Z7, Z1, Z1; \
	MOVQ acc+32(FP), R8; \
	TESTQ R8, R8; \
	JEQ gpst; \
	VADDPS (DX), Z0, Z0; \
	VADDPS 64(DX), Z1, Z1; \
gpst: \
	VMOVUPS Z0, (DX); \
	VMOVUPS Z1, 64(DX); \
	VZEROUPPER; \
	RET

#define GPARGS \
	MOVQ k+0(FP), CX; \
	MOVQ w+8(FP), SI; \
	MOVQ x+16(FP), DI; \
	MOVQ out+24(FP), DX

// STEPF32(woff, xoff, r0, r1): one t of f32 weights (128 bytes a row).
#define STEPF32(woff, xoff, r0, r1) \
	VBROADCASTSS xoff(DI), Z16; \
	VFMADD231PS woff(SI), Z16, r0; \
	VFMADD231PS (woff+64)(SI), Z16, r1

// STEPBF16 widens a row of 32 bf16 as its even columns (the low halves of
// its 16 dwords, shifted up) and its odd ones (the high halves, masked by
// Z26): one load and two ALU ops; the accumulators hold even and odd
// columns, interleaved at the end (GPDONEBF16).
#define STEPBF16(woff, xoff, r0, r1) \
	VPSLLD $16, woff(SI), Z8; \
	VPANDD woff(SI), Z26, Z9; \
	VBROADCASTSS xoff(DI), Z16; \
	VFMADD231PS Z8, Z16, r0; \
	VFMADD231PS Z9, Z16, r1

#define STEPF16(woff, xoff, r0, r1) \
	VCVTPH2PS woff(SI), Z8; \
	VCVTPH2PS (woff+32)(SI), Z9; \
	VBROADCASTSS xoff(DI), Z16; \
	VFMADD231PS Z8, Z16, r0; \
	VFMADD231PS Z9, Z16, r1

// GPLOOP runs STEP over k (CX) rows of rb bytes: four per round into the
// four accumulator pairs, then one at a time; PF prefetches ahead.
#define GPLOOP(STEP, rb, PF) \
gploop: \
	CMPQ CX, $4; \
	JLT gptail; \
	PF; \
	STEP(0, 0, Z0, Z1); \
	STEP(rb, 4, Z2, Z3); \
	STEP(2*rb, 8, Z4, Z5); \
	STEP(3*rb, 12, Z6, Z7); \
	ADDQ $(4*rb), SI; \
	ADDQ $16, DI; \
	SUBQ $4, CX; \
	JMP gploop; \
gptail: \
	TESTQ CX, CX; \
	JEQ gpend; \
	STEP(0, 0, Z0, Z1); \
	ADDQ $rb, SI; \
	ADDQ $4, DI; \
	DECQ CX; \
	JMP gptail; \
gpend:

#define PF32 \
	PREFETCHT0 2048(SI); PREFETCHT0 2112(SI); PREFETCHT0 2176(SI); PREFETCHT0 2240(SI); \
	PREFETCHT0 2304(SI); PREFETCHT0 2368(SI); PREFETCHT0 2432(SI); PREFETCHT0 2496(SI)

#define PF16 \
	PREFETCHT0 1024(SI); PREFETCHT0 1088(SI); PREFETCHT0 1152(SI); PREFETCHT0 1216(SI)

TEXT ·gemvPanelF32AVX512(SB), NOSPLIT, $0-40
	GPARGS
	GPZERO
	GPLOOP(STEPF32, 128, PF32)
	GPDONE

TEXT ·gemvPanelBF16AVX512(SB), NOSPLIT, $0-40
	GPARGS
	GPZERO
	MOVL $0xffff0000, BX
	VPBROADCASTD BX, Z26
	GPLOOP(STEPBF16, 64, PF16)
	// Z0 = even columns 0, 2, …, 30; Z1 = odd columns: interleave.
	VADDPS Z2, Z0, Z0; VADDPS Z4, Z0, Z0; VADDPS Z6, Z0, Z0
	VADDPS Z3, Z1, Z1; VADDPS Z5, Z1, Z1; VADDPS Z7, Z1, Z1
	VMOVDQU32 panelilv<>+0(SB), Z2
	VMOVDQU32 panelilv<>+64(SB), Z3
	VMOVAPS Z0, Z4
	VPERMT2PS Z1, Z2, Z0
	VPERMT2PS Z1, Z3, Z4
	VMOVAPS Z4, Z1
	VPXORD Z2, Z2, Z2; VPXORD Z3, Z3, Z3; VPXORD Z4, Z4, Z4; VPXORD Z5, Z5, Z5
	VPXORD Z6, Z6, Z6; VPXORD Z7, Z7, Z7
	GPDONE

// panelilv: VPERMT2PS indices interleaving two registers a (0–15) and b
// (16–31) as a0 b0 a1 b1 … (first 64 bytes: elements 0–7 of each; next 64:
// elements 8–15).
DATA panelilv<>+0(SB)/4, $0
DATA panelilv<>+4(SB)/4, $16
DATA panelilv<>+8(SB)/4, $1
DATA panelilv<>+12(SB)/4, $17
DATA panelilv<>+16(SB)/4, $2
DATA panelilv<>+20(SB)/4, $18
DATA panelilv<>+24(SB)/4, $3
DATA panelilv<>+28(SB)/4, $19
DATA panelilv<>+32(SB)/4, $4
DATA panelilv<>+36(SB)/4, $20
DATA panelilv<>+40(SB)/4, $5
DATA panelilv<>+44(SB)/4, $21
DATA panelilv<>+48(SB)/4, $6
DATA panelilv<>+52(SB)/4, $22
DATA panelilv<>+56(SB)/4, $7
DATA panelilv<>+60(SB)/4, $23
DATA panelilv<>+64(SB)/4, $8
DATA panelilv<>+68(SB)/4, $24
DATA panelilv<>+72(SB)/4, $9
DATA panelilv<>+76(SB)/4, $25
DATA panelilv<>+80(SB)/4, $10
DATA panelilv<>+84(SB)/4, $26
DATA panelilv<>+88(SB)/4, $11
DATA panelilv<>+92(SB)/4, $27
DATA panelilv<>+96(SB)/4, $12
DATA panelilv<>+100(SB)/4, $28
DATA panelilv<>+104(SB)/4, $13
DATA panelilv<>+108(SB)/4, $29
DATA panelilv<>+112(SB)/4, $14
DATA panelilv<>+116(SB)/4, $30
DATA panelilv<>+120(SB)/4, $15
DATA panelilv<>+124(SB)/4, $31
GLOBL panelilv<>(SB), RODATA|NOPTR, $128

TEXT ·gemvPanelF16AVX512(SB), NOSPLIT, $0-40
	GPARGS
	GPZERO
	GPLOOP(STEPF16, 64, PF16)
	GPDONE
