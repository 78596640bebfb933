//go:build !purego

#include "textflag.h"

// AVX-512 kernels over the planar quantized rows of quant.go. Register use
// follows the Go ABI0 rules: R14/R15 untouched.

// QHSUM adds the 16 lanes of zr and stores the sum at dst.
#define QHSUM(zr, yr, xr, dst) \
	VEXTRACTF64X4 $1, zr, Y28; \
	VADDPS Y28, yr, yr; \
	VEXTRACTF32X4 $1, yr, X29; \
	VADDPS X29, xr, xr; \
	VHADDPS xr, xr, xr; \
	VHADDPS xr, xr, xr; \
	MOVSS xr, dst

// QDQ_PROLOGUE loads nb (CX), the row's quants (R10), dst (DI) and the
// address of its scales (SI: the quants are nb<<SHIFT bytes).
#define QDQ_PROLOGUE(SHIFT) \
	MOVQ nb+0(FP), CX; \
	MOVQ row+8(FP), R10; \
	MOVQ dst+16(FP), DI; \
	MOVQ CX, SI; \
	SHLQ $SHIFT, SI; \
	ADDQ R10, SI

// QGROUP_MASK sets BX = min(16, CX) blocks for this group and K1 to their
// lane mask, so the scale loads of a final partial group stop at the row's end.
#define QGROUP_MASK \
	MOVQ $16, BX; \
	CMPQ CX, BX; \
	CMOVQLT CX, BX; \
	MOVQ $-1, R9; \
	SHLXQ BX, R9, R9; \
	NOTQ R9; \
	KMOVW R9, K1

// QSCALES converts one row's (up to) 16 f16 block scales at ADDR to f32 and
// stores them at OFF(SP), where the block loop broadcasts them.
#define QSCALES(ADDR, OFF) \
	VMOVDQU16.Z ADDR, K1, Y8; \
	VCVTPH2PS Y8, Z8; \
	VMOVUPS Z8, OFF(SP)

// QMINS adds m·Σx of (up to) 16 blocks of one row: lanes are blocks, summed
// with the rest of the row's accumulator at the end.
#define QMINS(ADDR, ACC) \
	VMOVDQU16.Z ADDR, K1, Y9; \
	VCVTPH2PS Y9, Z9; \
	VFMADD231PS Z9, Z30, ACC

// QGEMV_PROLOGUE loads nb (CX), the four row pointers (R10–R13), ldw (DX)
// and x (DI), and zeroes the accumulators Z4–Z7.
#define QGEMV_PROLOGUE \
	MOVQ nb+0(FP), CX; \
	MOVQ w+8(FP), R10; \
	MOVQ ldw+16(FP), DX; \
	MOVQ x+24(FP), DI; \
	LEAQ (R10)(DX*1), R11; \
	LEAQ (R11)(DX*1), R12; \
	LEAQ (R12)(DX*1), R13; \
	VPXORD Z4, Z4, Z4; \
	VPXORD Z5, Z5, Z5; \
	VPXORD Z6, Z6, Z6; \
	VPXORD Z7, Z7, Z7

// QGEMV_EPILOGUE stores the four rows' sums at R8.
#define QGEMV_EPILOGUE \
	QHSUM(Z4, Y4, X4, (R8)); \
	QHSUM(Z5, Y5, X5, 4(R8)); \
	QHSUM(Z6, Y6, X6, 8(R8)); \
	QHSUM(Z7, Y7, X7, 12(R8)); \
	VZEROUPPER; \
	RET

// QGEMV_BLOCKS runs the block loop of one group (BX blocks) with ROW.
#define QGEMV_BLOCKS(ROW, label) \
	XORQ R9, R9; \
label: \
	VMOVUPS (DI), Z0; \
	VMOVUPS 64(DI), Z1; \
	ADDQ $128, DI; \
	ROW(R10, 0, Z10, Z11, Z4); \
	ROW(R11, 64, Z12, Z13, Z5); \
	ROW(R12, 128, Z14, Z15, Z6); \
	ROW(R13, 192, Z16, Z17, Z7); \
	INCQ R9; \
	CMPQ R9, BX; \
	JLT label

// Q41ROW: one Q4_1 block of one row, the 32 activations in Z0 (elements 0–15)
// and Z1 (16–31): low nibbles are elements 0–15, high ones 16–31; the block's
// Σq·x is scaled by its d (broadcast from the scratch) into the accumulator.
#define Q41ROW(R, OFF, T0, T1, ACC) \
	VPMOVZXBD (R), T0; \
	VPSRLD $4, T0, T1; \
	VPANDD Z31, T0, T0; \
	VCVTDQ2PS T0, T0; \
	VCVTDQ2PS T1, T1; \
	VMULPS Z0, T0, T0; \
	VFMADD231PS Z1, T1, T0; \
	VFMADD231PS.BCST OFF(SP)(R9*4), T0, ACC; \
	ADDQ $16, R

// q41Gemv4AVX512(nb int, w *byte, ldw int, x, sx, out *float32)
// out[r] = Σ_b d[r][b]·(q[r][b]·x_b) + m[r][b]·sx[b] for the four planar Q4_1
// rows at w, ldw bytes apart; sx is padded with zeros to a multiple of 16.
TEXT ·q41Gemv4AVX512(SB), NOSPLIT, $256-48
	QGEMV_PROLOGUE
	MOVQ sx+32(FP), R8
	MOVQ CX, SI
	SHLQ $4, SI
	ADDQ R10, SI // d of row 0
	LEAQ (SI)(CX*2), AX // m of row 0
	MOVL $0x0F, R9
	VPBROADCASTD R9, Z31
	TESTQ CX, CX
	JZ q41done
q41group:
	QGROUP_MASK
	VMOVUPS (R8), Z30
	QSCALES((SI), 0)
	QMINS((AX), Z4)
	QSCALES((SI)(DX*1), 64)
	QMINS((AX)(DX*1), Z5)
	QSCALES((SI)(DX*2), 128)
	QMINS((AX)(DX*2), Z6)
	LEAQ (SI)(DX*2), R9
	QSCALES((R9)(DX*1), 192)
	LEAQ (AX)(DX*2), R9
	QMINS((R9)(DX*1), Z7)
	QGEMV_BLOCKS(Q41ROW, q41blk)
	ADDQ $32, SI
	ADDQ $32, AX
	ADDQ $64, R8
	SUBQ BX, CX
	JNZ q41group
q41done:
	MOVQ out+40(FP), R8
	QGEMV_EPILOGUE

// Q80ROW: one Q8_0 block of one row (32 signed bytes).
#define Q80ROW(R, OFF, T0, T1, ACC) \
	VPMOVSXBD (R), T0; \
	VPMOVSXBD 16(R), T1; \
	VCVTDQ2PS T0, T0; \
	VCVTDQ2PS T1, T1; \
	VMULPS Z0, T0, T0; \
	VFMADD231PS Z1, T1, T0; \
	VFMADD231PS.BCST OFF(SP)(R9*4), T0, ACC; \
	ADDQ $32, R

// q80Gemv4AVX512(nb int, w *byte, ldw int, x, out *float32)
// out[r] = Σ_b d[r][b]·(q[r][b]·x_b) for the four planar Q8_0 rows at w.
TEXT ·q80Gemv4AVX512(SB), NOSPLIT, $256-40
	QGEMV_PROLOGUE
	MOVQ CX, SI
	SHLQ $5, SI
	ADDQ R10, SI // d of row 0
	TESTQ CX, CX
	JZ q80done
q80group:
	QGROUP_MASK
	QSCALES((SI), 0)
	QSCALES((SI)(DX*1), 64)
	QSCALES((SI)(DX*2), 128)
	LEAQ (SI)(DX*2), R9
	QSCALES((R9)(DX*1), 192)
	QGEMV_BLOCKS(Q80ROW, q80blk)
	ADDQ $32, SI
	SUBQ BX, CX
	JNZ q80group
q80done:
	MOVQ out+32(FP), R8
	QGEMV_EPILOGUE

// q41DequantAVX512(nb int, row *byte, dst *float32)
// dst = d·q + m per block, one FMA per element: the same bits as the portable
// dequantQ41 (d·q is exact in f32).
TEXT ·q41DequantAVX512(SB), NOSPLIT, $0-24
	QDQ_PROLOGUE(4)
	LEAQ (SI)(CX*2), AX
	MOVL $0x0F, R9
	VPBROADCASTD R9, Z31
	TESTQ CX, CX
	JZ q41dqdone
q41dq:
	VPBROADCASTW (SI), Y8
	VCVTPH2PS Y8, Z8
	VPBROADCASTW (AX), Y9
	VCVTPH2PS Y9, Z9
	VPMOVZXBD (R10), Z2
	VPSRLD $4, Z2, Z3
	VPANDD Z31, Z2, Z2
	VCVTDQ2PS Z2, Z2
	VCVTDQ2PS Z3, Z3
	VFMADD213PS Z9, Z8, Z2
	VFMADD213PS Z9, Z8, Z3
	VMOVUPS Z2, (DI)
	VMOVUPS Z3, 64(DI)
	ADDQ $16, R10
	ADDQ $2, SI
	ADDQ $2, AX
	ADDQ $128, DI
	DECQ CX
	JNZ q41dq
q41dqdone:
	VZEROUPPER
	RET

// q80DequantAVX512(nb int, row *byte, dst *float32)
TEXT ·q80DequantAVX512(SB), NOSPLIT, $0-24
	QDQ_PROLOGUE(5)
	TESTQ CX, CX
	JZ q80dqdone
q80dq:
	VPBROADCASTW (SI), Y8
	VCVTPH2PS Y8, Z8
	VPMOVSXBD (R10), Z2
	VPMOVSXBD 16(R10), Z3
	VCVTDQ2PS Z2, Z2
	VCVTDQ2PS Z3, Z3
	VMULPS Z8, Z2, Z2
	VMULPS Z8, Z3, Z3
	VMOVUPS Z2, (DI)
	VMOVUPS Z3, 64(DI)
	ADDQ $32, R10
	ADDQ $2, SI
	ADDQ $128, DI
	DECQ CX
	JNZ q80dq
q80dqdone:
	VZEROUPPER
	RET
