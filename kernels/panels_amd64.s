//go:build !purego

#include "textflag.h"

// One-row products over weights in panel layout (panels.go): out[0:32] (+)=
// Σ_t x[t] · W[t][0:32], W one panel of k rows of 32 values, rb = 32·size
// bytes apart. A lone decode step reads each panel once: the k rows are cut
// into four quarters streamed side by side (four sequential streams per core,
// as the row-major kernels' four weight rows: one stream alone stalls on the
// memory latency), each quarter into its own accumulator pair (Z0–Z7, eight
// FMAs in flight), and the weights are widened in registers (bf16: shift and
// mask; f16: VCVTPH2PS), never written back. The k%4 rows left over follow
// the last quarter.
//
// func gemvPanelF32AVX512(k int, w *float32, x *float32, out *float32, acc int)
// func gemvPanelBF16AVX512(k int, w *uint16, x *float32, out *float32, acc int)
// func gemvPanelF16AVX512(k int, w *uint16, x *float32, out *float32, acc int)
//
// Registers: the quarters' weight bases SI R8 R9 R10 and activation bases DI
// R11 R12 R13, the running offsets AX (weights) and BX (activations), CX the
// count, DX out.

#define GPZERO \
	VPXORD Z0, Z0, Z0; VPXORD Z1, Z1, Z1; VPXORD Z2, Z2, Z2; VPXORD Z3, Z3, Z3; \
	VPXORD Z4, Z4, Z4; VPXORD Z5, Z5, Z5; VPXORD Z6, Z6, Z6; VPXORD Z7, Z7, Z7

// GPFOLD sums the quarters' accumulators into Z0 (columns 0–15) and Z1.
#define GPFOLD \
	VADDPS Z2, Z0, Z0; VADDPS Z4, Z0, Z0; VADDPS Z6, Z0, Z0; \
	VADDPS Z3, Z1, Z1; VADDPS Z5, Z1, Z1; VADDPS Z7, Z1, Z1

// GPSTORE adds out when acc != 0 and stores Z0, Z1.
#define GPSTORE \
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

// GPSETUP loads the arguments and sets the quarter bases for rows of
// 1<<rsh bytes.
#define GPSETUP(rsh) \
	MOVQ k+0(FP), CX; \
	MOVQ w+8(FP), SI; \
	MOVQ x+16(FP), DI; \
	MOVQ out+24(FP), DX; \
	MOVQ CX, AX; \
	SHRQ $2, AX; \
	MOVQ AX, BX; \
	SHLQ $2, BX; \
	SHLQ $rsh, AX; \
	LEAQ (SI)(AX*1), R8; \
	LEAQ (R8)(AX*1), R9; \
	LEAQ (R9)(AX*1), R10; \
	LEAQ (DI)(BX*1), R11; \
	LEAQ (R11)(BX*1), R12; \
	LEAQ (R12)(BX*1), R13; \
	SHRQ $2, CX; \
	XORQ AX, AX; \
	XORQ BX, BX; \
	GPZERO

// GPLOOP runs STEP over the quarters side by side, then over the k%4 rows
// after the last quarter; PF(b) prefetches ahead in the stream at base b.
#define GPLOOP(STEP, rb, PF) \
	TESTQ CX, CX; \
	JEQ gptail0; \
gploop: \
	PF(SI); PF(R8); PF(R9); PF(R10); \
	STEP(SI, DI, Z0, Z1); \
	STEP(R8, R11, Z2, Z3); \
	STEP(R9, R12, Z4, Z5); \
	STEP(R10, R13, Z6, Z7); \
	ADDQ $rb, AX; \
	ADDQ $4, BX; \
	DECQ CX; \
	JNZ gploop; \
gptail0: \
	MOVQ k+0(FP), CX; \
	ANDQ $3, CX; \
gptail: \
	TESTQ CX, CX; \
	JEQ gpend; \
	STEP(R10, R13, Z6, Z7); \
	ADDQ $rb, AX; \
	ADDQ $4, BX; \
	DECQ CX; \
	JMP gptail; \
gpend:

#define STEPF32(wb, xb, r0, r1) \
	VBROADCASTSS (xb)(BX*1), Z16; \
	VFMADD231PS (wb)(AX*1), Z16, r0; \
	VFMADD231PS 64(wb)(AX*1), Z16, r1

// STEPBF16 widens a row of 32 bf16 as its even columns (the low halves of
// its 16 dwords, shifted up) and its odd ones (the high halves, masked by
// Z26): two ALU ops; the accumulators hold even and odd columns,
// interleaved at the end.
#define STEPBF16(wb, xb, r0, r1) \
	VPSLLD $16, (wb)(AX*1), Z8; \
	VPANDD (wb)(AX*1), Z26, Z9; \
	VBROADCASTSS (xb)(BX*1), Z16; \
	VFMADD231PS Z8, Z16, r0; \
	VFMADD231PS Z9, Z16, r1

#define STEPF16(wb, xb, r0, r1) \
	VCVTPH2PS (wb)(AX*1), Z8; \
	VCVTPH2PS 32(wb)(AX*1), Z9; \
	VBROADCASTSS (xb)(BX*1), Z16; \
	VFMADD231PS Z8, Z16, r0; \
	VFMADD231PS Z9, Z16, r1

// Prefetch 2 KiB ahead in a stream: two lines per f32 row, one per 16-bit row.
#define PF32(b) PREFETCHT0 2048(b)(AX*1); PREFETCHT0 2112(b)(AX*1)
#define PF16(b) PREFETCHT0 2048(b)(AX*1)

TEXT ·gemvPanelF32AVX512(SB), NOSPLIT, $0-40
	GPSETUP(7)
	GPLOOP(STEPF32, 128, PF32)
	GPFOLD
	GPSTORE

TEXT ·gemvPanelBF16AVX512(SB), NOSPLIT, $0-40
	MOVL $0xffff0000, AX
	VPBROADCASTD AX, Z26
	GPSETUP(6)
	GPLOOP(STEPBF16, 64, PF16)
	// Z0 = even columns 0, 2, …, 30; Z1 = odd columns: interleave.
	GPFOLD
	VMOVDQU32 ·panelIlv+0(SB), Z2
	VMOVDQU32 ·panelIlv+64(SB), Z3
	VMOVAPS Z0, Z4
	VPERMT2PS Z1, Z2, Z0
	VPERMT2PS Z1, Z3, Z4
	VMOVAPS Z4, Z1
	GPSTORE

TEXT ·gemvPanelF16AVX512(SB), NOSPLIT, $0-40
	GPSETUP(6)
	GPLOOP(STEPF16, 64, PF16)
	GPFOLD
	GPSTORE

// panelIlv holds the VPERMT2PS indices that interleave two registers a
// (indices 0–15) and b (16–31) as a0 b0 a1 b1 …: the first 16 for elements
// 0–7 of each, the next 16 for 8–15. The bf16 panel kernels (here and in
// panels_batch_amd64.s) keep a row's even and odd columns apart and put them
// back in order with it. Read-only data, with no Go declaration.
DATA ·panelIlv+0(SB)/4, $0
DATA ·panelIlv+4(SB)/4, $16
DATA ·panelIlv+8(SB)/4, $1
DATA ·panelIlv+12(SB)/4, $17
DATA ·panelIlv+16(SB)/4, $2
DATA ·panelIlv+20(SB)/4, $18
DATA ·panelIlv+24(SB)/4, $3
DATA ·panelIlv+28(SB)/4, $19
DATA ·panelIlv+32(SB)/4, $4
DATA ·panelIlv+36(SB)/4, $20
DATA ·panelIlv+40(SB)/4, $5
DATA ·panelIlv+44(SB)/4, $21
DATA ·panelIlv+48(SB)/4, $6
DATA ·panelIlv+52(SB)/4, $22
DATA ·panelIlv+56(SB)/4, $7
DATA ·panelIlv+60(SB)/4, $23
DATA ·panelIlv+64(SB)/4, $8
DATA ·panelIlv+68(SB)/4, $24
DATA ·panelIlv+72(SB)/4, $9
DATA ·panelIlv+76(SB)/4, $25
DATA ·panelIlv+80(SB)/4, $10
DATA ·panelIlv+84(SB)/4, $26
DATA ·panelIlv+88(SB)/4, $11
DATA ·panelIlv+92(SB)/4, $27
DATA ·panelIlv+96(SB)/4, $12
DATA ·panelIlv+100(SB)/4, $28
DATA ·panelIlv+104(SB)/4, $13
DATA ·panelIlv+108(SB)/4, $29
DATA ·panelIlv+112(SB)/4, $14
DATA ·panelIlv+116(SB)/4, $30
DATA ·panelIlv+120(SB)/4, $15
DATA ·panelIlv+124(SB)/4, $31
GLOBL ·panelIlv(SB), RODATA|NOPTR, $128
