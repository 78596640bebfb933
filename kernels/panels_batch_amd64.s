//go:build !purego

#include "textflag.h"

// Products of eight activation rows with one weight panel (panels.go, 32
// output columns): c[i][0:32] (+)= Σ_{t<kc} x[i·ldx+t] · W[t][0:32], i < 8,
// W kc rows of 32 values, c rows ldc floats apart. A batched decode step
// streams each panel once for all its rows; each panel row is widened in
// registers (bf16: shift and mask, as the one-row kernels; f16: VCVTPH2PS)
// and meets the eight rows' broadcast activations in 16 FMAs into 16
// accumulators (Z0–Z15, rows × two halves), so the kernel does 16 FMAs per
// 64 bytes of 16-bit weights, well above what memory delivers at 8 rows and
// FMA-bound from about 16.
//
// Each step also prefetches one panel row's lines at pf, pf advancing with
// the weights: a few KiB ahead in its own panel for the group that streams it
// from memory, the next piece for the groups that read this one from cache,
// so memory stays busy while they compute.
//
// func gemmPanel8F32AVX512(kc int, w *float32, x *float32, ldx int, c *float32, ldc int, acc int, pf uintptr)
// func gemmPanel8BF16AVX512(kc int, w *uint16, x *float32, ldx int, c *float32, ldc int, acc int, pf uintptr)
// func gemmPanel8F16AVX512(kc int, w *uint16, x *float32, ldx int, c *float32, ldc int, acc int, pf uintptr)
//
// Registers: SI the weights, R13 the prefetch pointer, R8 activation rows
// 0–3 and R11 rows 4–7 (R9 = ldx bytes, R10 = 3·ldx bytes), CX the count;
// Z16–Z17 a widened weight row, Z18–Z21 broadcasts, Z26 the bf16 odd-column
// mask.

#define PBZERO \
	VPXORD Z0, Z0, Z0; VPXORD Z1, Z1, Z1; VPXORD Z2, Z2, Z2; VPXORD Z3, Z3, Z3; \
	VPXORD Z4, Z4, Z4; VPXORD Z5, Z5, Z5; VPXORD Z6, Z6, Z6; VPXORD Z7, Z7, Z7; \
	VPXORD Z8, Z8, Z8; VPXORD Z9, Z9, Z9; VPXORD Z10, Z10, Z10; VPXORD Z11, Z11, Z11; \
	VPXORD Z12, Z12, Z12; VPXORD Z13, Z13, Z13; VPXORD Z14, Z14, Z14; VPXORD Z15, Z15, Z15

#define PBSETUP \
	MOVQ kc+0(FP), CX; \
	MOVQ w+8(FP), SI; \
	MOVQ pf+56(FP), R13; \
	MOVQ x+16(FP), R8; \
	MOVQ ldx+24(FP), R9; \
	SHLQ $2, R9; \
	LEAQ (R9)(R9*2), R10; \
	LEAQ (R8)(R9*4), R11; \
	PBZERO

// PBFMA4 multiplies the weight row in Z16 (columns a) and Z17 (columns b)
// by four rows' activations at xb, xb+ldx, xb+2·ldx, xb+3·ldx into the
// accumulator pairs a0 b0 … a3 b3.
#define PBFMA4(xb, a0, b0, a1, b1, a2, b2, a3, b3) \
	VBROADCASTSS (xb), Z18; \
	VBROADCASTSS (xb)(R9*1), Z19; \
	VBROADCASTSS (xb)(R9*2), Z20; \
	VBROADCASTSS (xb)(R10*1), Z21; \
	VFMADD231PS Z16, Z18, a0; \
	VFMADD231PS Z17, Z18, b0; \
	VFMADD231PS Z16, Z19, a1; \
	VFMADD231PS Z17, Z19, b1; \
	VFMADD231PS Z16, Z20, a2; \
	VFMADD231PS Z17, Z20, b2; \
	VFMADD231PS Z16, Z21, a3; \
	VFMADD231PS Z17, Z21, b3

// PBFMA8 is one step of the eight rows; then on to the next step.
#define PBFMA8 \
	PBFMA4(R8, Z0, Z1, Z2, Z3, Z4, Z5, Z6, Z7); \
	PBFMA4(R11, Z8, Z9, Z10, Z11, Z12, Z13, Z14, Z15); \
	ADDQ $4, R8; \
	ADDQ $4, R11

// PBLOOP runs LOAD (one weight row into Z16, Z17, advancing SI) and PBFMA8
// kc times.
#define PBLOOP(LOAD) \
	TESTQ CX, CX; \
	JEQ pbend; \
pbloop: \
	LOAD; \
	PBFMA8; \
	DECQ CX; \
	JNZ pbloop; \
pbend:

// PBROW adds (when acc != 0, BX) and stores one row's accumulators at DX,
// then moves DX to the next row (R12 = ldc bytes).
#define PBROW(r0, r1) \
	TESTQ BX, BX; \
	JEQ 3(PC); \
	VADDPS (DX), r0, r0; \
	VADDPS 64(DX), r1, r1; \
	VMOVUPS r0, (DX); \
	VMOVUPS r1, 64(DX); \
	ADDQ R12, DX

#define PBSTORE \
	MOVQ c+32(FP), DX; \
	MOVQ ldc+40(FP), R12; \
	SHLQ $2, R12; \
	MOVQ acc+48(FP), BX; \
	PBROW(Z0, Z1); PBROW(Z2, Z3); PBROW(Z4, Z5); PBROW(Z6, Z7); \
	PBROW(Z8, Z9); PBROW(Z10, Z11); PBROW(Z12, Z13); PBROW(Z14, Z15); \
	VZEROUPPER; \
	RET

#define LOADF32 \
	VMOVUPS (SI), Z16; \
	VMOVUPS 64(SI), Z17; \
	PREFETCHT0 (R13); \
	PREFETCHT0 64(R13); \
	ADDQ $128, SI; \
	ADDQ $128, R13

// LOADBF16 widens a row of 32 bf16 as its even columns (the low halves of
// its 16 dwords, shifted up) and its odd ones (the high halves, masked): the
// accumulators hold even and odd columns, interleaved before the store.
#define LOADBF16 \
	VPSLLD $16, (SI), Z16; \
	VPANDD (SI), Z26, Z17; \
	PREFETCHT0 (R13); \
	ADDQ $64, SI; \
	ADDQ $64, R13

#define LOADF16 \
	VCVTPH2PS (SI), Z16; \
	VCVTPH2PS 32(SI), Z17; \
	PREFETCHT0 (R13); \
	ADDQ $64, SI; \
	ADDQ $64, R13

// PBILV interleaves one row's even (r0) and odd (r1) columns back into
// columns 0–15 (r0) and 16–31 (r1); Z24, Z25 hold the permutations.
#define PBILV(r0, r1) \
	VMOVAPS r0, Z20; \
	VPERMT2PS r1, Z24, r0; \
	VPERMT2PS r1, Z25, Z20; \
	VMOVAPS Z20, r1

TEXT ·gemmPanel8F32AVX512(SB), NOSPLIT, $0-64
	PBSETUP
	PBLOOP(LOADF32)
	PBSTORE

TEXT ·gemmPanel8BF16AVX512(SB), NOSPLIT, $0-64
	MOVL $0xffff0000, AX
	VPBROADCASTD AX, Z26
	PBSETUP
	PBLOOP(LOADBF16)
	VMOVDQU32 ·panelIlv+0(SB), Z24
	VMOVDQU32 ·panelIlv+64(SB), Z25
	PBILV(Z0, Z1); PBILV(Z2, Z3); PBILV(Z4, Z5); PBILV(Z6, Z7)
	PBILV(Z8, Z9); PBILV(Z10, Z11); PBILV(Z12, Z13); PBILV(Z14, Z15)
	PBSTORE

TEXT ·gemmPanel8F16AVX512(SB), NOSPLIT, $0-64
	PBSETUP
	PBLOOP(LOADF16)
	PBSTORE
