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

// QGEMV_PROLOGUE loads nb (CX), the four row pointers (R10–R13) and ldw
// (DX), and zeroes the accumulators Z4–Z7 (the caller loads its activation).
#define QGEMV_PROLOGUE \
	MOVQ nb+0(FP), CX; \
	MOVQ w+8(FP), R10; \
	MOVQ ldw+16(FP), DX; \
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

// The integer kernels against an 8-bit activation (quant_q8.go), AVX-512
// VNNI. xq, xd and sx are padded with zeros to whole groups of 16 blocks;
// weight loads past the row's last block are masked off (zero, no fault).
// Per group of 16 blocks each row gathers four int32 vectors, one per four
// blocks (four dwords a block); QREDUCE folds them to one dword a block.

// QBYTEMASK stores at OFF(SP) the byte mask of the H-th 64-byte load of a
// group of BX blocks of BPB bytes: clamp(BX·BPB − 64·H, 0, 64) low bits set.
#define QBYTEMASK(H, BPB, OFF) \
	MOVQ BX, R8; \
	IMULQ $BPB, R8; \
	SUBQ $(64*H), R8; \
	XORQ R9, R9; \
	CMPQ R8, R9; \
	CMOVQLT R9, R8; \
	MOVQ $64, R9; \
	CMPQ R8, R9; \
	CMOVQGT R9, R8; \
	MOVQ $-1, R9; \
	BZHIQ R8, R9, R9; \
	MOVQ R9, OFF(SP)

// Q41_SCALES points SI at row 0's d and AX at its m (after nb·16 bytes of
// nibbles, nb·2 of d).
#define Q41_SCALES \
	MOVQ CX, SI; \
	SHLQ $4, SI; \
	ADDQ R10, SI; \
	LEAQ (SI)(CX*2), AX

// QI8_MASKS sets the group's scale mask (K1, QGROUP_MASK) and stores the
// byte masks of its first four 64-byte loads of BPB-byte blocks.
#define QI8_MASKS(BPB) \
	QGROUP_MASK; \
	QBYTEMASK(0, BPB, 0); \
	QBYTEMASK(1, BPB, 8); \
	QBYTEMASK(2, BPB, 16); \
	QBYTEMASK(3, BPB, 24)

// QI8_PROLOGUE is QGEMV_PROLOGUE with xq (DI) and the block order index (Z30).
#define QI8_PROLOGUE \
	QGEMV_PROLOGUE; \
	MOVQ xq+24(FP), DI; \
	VMOVDQU32 qi8perm<>(SB), Z30

// QI8_XD loads the group's 16 activation scales into Z28 (and, with SX,
// its sums into Z29), advancing the argument slots to the next group.
#define QI8_XD \
	MOVQ xd+32(FP), R8; \
	VMOVUPS (R8), Z28; \
	ADDQ $64, R8; \
	MOVQ R8, xd+32(FP)

#define QI8_SX \
	MOVQ sx+40(FP), R8; \
	VMOVUPS (R8), Z29; \
	ADDQ $64, R8; \
	MOVQ R8, sx+40(FP)

// QREDUCE folds Z12–Z15 (blocks 4s..4s+3 of sub-group s, four dwords a
// block) into Z0: one int32 a block, in block order (Z30 undoes the
// transposition the unpacks leave).
#define QREDUCE \
	VPUNPCKLDQ Z13, Z12, Z0; \
	VPUNPCKHDQ Z13, Z12, Z1; \
	VPADDD Z1, Z0, Z0; \
	VPUNPCKLDQ Z15, Z14, Z1; \
	VPUNPCKHDQ Z15, Z14, Z2; \
	VPADDD Z2, Z1, Z1; \
	VPUNPCKLQDQ Z1, Z0, Z2; \
	VPUNPCKHQDQ Z1, Z0, Z3; \
	VPADDD Z3, Z2, Z0; \
	VPERMD Z0, Z30, Z0

// QI8FLOAT adds isum·(d·dx) of the group's blocks to ACC: d the row's 16
// f16 scales at DADDR (masked by K1), dx in Z28. Separate multiplies and
// adds, in the order of the portable dotQ8Row.
#define QI8FLOAT(DADDR, ACC) \
	VCVTDQ2PS Z0, Z0; \
	VMOVDQU16.Z DADDR, K1, Y1; \
	VCVTPH2PS Y1, Z1; \
	VMULPS Z28, Z1, Z1; \
	VMULPS Z1, Z0, Z0; \
	VADDPS Z0, ACC, ACC

// Q41I8SUB: four Q4_1 blocks (64 bytes of nibbles in Z10) against their
// activations split into low (elements 0–15) and high (16–31) halves.
#define Q41I8SUB(LO, HI, IACC) \
	VPSRLW $4, Z10, Z11; \
	VPANDD Z31, Z10, Z10; \
	VPANDD Z31, Z11, Z11; \
	VPXORD IACC, IACC, IACC; \
	VPDPBUSD LO, Z10, IACC; \
	VPDPBUSD HI, Z11, IACC

// Q41I8ROW: one row's group: the integer sums, then d·dx and m·Σx.
#define Q41I8ROW(R, DADDR, MADDR, ACC) \
	VMOVDQU8.Z (R), K2, Z10; \
	Q41I8SUB(Z16, Z17, Z12); \
	VMOVDQU8.Z 64(R), K3, Z10; \
	Q41I8SUB(Z18, Z19, Z13); \
	VMOVDQU8.Z 128(R), K4, Z10; \
	Q41I8SUB(Z20, Z21, Z14); \
	VMOVDQU8.Z 192(R), K5, Z10; \
	Q41I8SUB(Z22, Z23, Z15); \
	Q41I8END(R, DADDR, MADDR, ACC)

// Q41I8ROW4 is Q41I8ROW for a last group of at most four blocks (SmolLM2's
// 576 columns are 16 + 2): sub-groups 1–3 would only add zeros.
#define Q41I8ROW4(R, DADDR, MADDR, ACC) \
	VMOVDQU8.Z (R), K2, Z10; \
	Q41I8SUB(Z16, Z17, Z12); \
	VPXORD Z13, Z13, Z13; \
	VPXORD Z14, Z14, Z14; \
	VPXORD Z15, Z15, Z15; \
	Q41I8END(R, DADDR, MADDR, ACC)

#define Q41I8END(R, DADDR, MADDR, ACC) \
	ADDQ $256, R; \
	QREDUCE; \
	QI8FLOAT(DADDR, ACC); \
	VMOVDQU16.Z MADDR, K1, Y1; \
	VCVTPH2PS Y1, Z1; \
	VMULPS Z29, Z1, Z1; \
	VADDPS Z1, ACC, ACC

// Q41I8ACT splits the activations of four blocks (128 bytes at OFF(DI))
// into the low halves (LO) and high halves (HI), block order kept, to meet
// the nibbles' layout.
#define Q41I8ACT(OFF, LO, HI) \
	VMOVDQU64 OFF(DI), Z8; \
	VMOVDQU64 OFF+64(DI), Z9; \
	VSHUFI64X2 $0x88, Z9, Z8, LO; \
	VSHUFI64X2 $0xDD, Z9, Z8, HI


// Q80I8HALF: two Q8_0 blocks (64 signed bytes, the H-th load of the group)
// against their activations offset by 128 (UX, unsigned), less 128·Σq.
#define Q80I8HALF(R, OFF, MOFF, UX, W, T0, T1) \
	KMOVQ MOFF(SP), K2; \
	VMOVDQU8.Z OFF(R), K2, W; \
	VPXORD T0, T0, T0; \
	VPDPBUSD W, UX, T0; \
	VPXORD T1, T1, T1; \
	VPDPBUSD W, Z27, T1; \
	VPSUBD T1, T0, T0

// Q80I8SUB: four Q8_0 blocks into IACC, four dwords a block in block order.
#define Q80I8SUB(R, OFF, MOFF, UX0, UX1, IACC) \
	Q80I8HALF(R, OFF, MOFF, UX0, Z10, Z0, Z1); \
	Q80I8HALF(R, OFF+64, MOFF+8, UX1, Z11, Z2, Z3); \
	VSHUFI64X2 $0x88, Z2, Z0, Z8; \
	VSHUFI64X2 $0xDD, Z2, Z0, Z9; \
	VPADDD Z9, Z8, IACC

#define Q80I8ROW(R, DADDR, ACC) \
	Q80I8SUB(R, 0, 0, Z16, Z17, Z12); \
	Q80I8SUB(R, 128, 16, Z18, Z19, Z13); \
	Q80I8SUB(R, 256, 32, Z20, Z21, Z14); \
	Q80I8SUB(R, 384, 48, Z22, Z23, Z15); \
	ADDQ $512, R; \
	QREDUCE; \
	QI8FLOAT(DADDR, ACC)

// Q80I8ROW4: a last group of at most four blocks.
#define Q80I8ROW4(R, DADDR, ACC) \
	Q80I8SUB(R, 0, 0, Z16, Z17, Z12); \
	VPXORD Z13, Z13, Z13; \
	VPXORD Z14, Z14, Z14; \
	VPXORD Z15, Z15, Z15; \
	ADDQ $512, R; \
	QREDUCE; \
	QI8FLOAT(DADDR, ACC)

// QPF is how far ahead of its quants a row's stream is prefetched (Q4_1
// and Q8_0): four rows' streams at once outrun the hardware prefetcher
// (BenchmarkDecodeLayer read 1.3× the bytes/s with it, on a loaded machine).
#define QPF 1024

// Q41ROW: one Q4_1 block of one row, the 32 activations in Z0 (elements 0–15)
// and Z1 (16–31): low nibbles are elements 0–15, high ones 16–31; the block's
// Σq·x is scaled by its d (broadcast from the scratch) into the accumulator.
#define Q41ROW(R, OFF, T0, T1, ACC) \
	PREFETCHT0 QPF(R); \
	VPMOVZXBD (R), T0; \
	VPSRLD $4, T0, T1; \
	VPERMPS Z31, T0, T0; \
	VPERMPS Z31, T1, T1; \
	VMULPS Z0, T0, T0; \
	VFMADD231PS Z1, T1, T0; \
	VFMADD231PS.BCST OFF(SP)(R9*4), T0, ACC; \
	ADDQ $16, R

// q41Gemv4AVX512(nb int, w *byte, ldw int, x, sx, out *float32)
// out[r] = Σ_b d[r][b]·(q[r][b]·x_b) + m[r][b]·sx[b] for the four planar Q4_1
// rows at w, ldw bytes apart; sx is padded with zeros to a multiple of 16.
TEXT ·q41Gemv4AVX512(SB), NOSPLIT, $256-48
	QGEMV_PROLOGUE
	MOVQ x+24(FP), DI
	MOVQ sx+32(FP), R8
	Q41_SCALES
	VMOVUPS q41flt<>(SB), Z31
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
	PREFETCHT0 QPF(R); \
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
	MOVQ x+24(FP), DI
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

// q41Gemv4VNNI(nb int, w *byte, ldw int, xq *int8, xd, sx, out *float32)
TEXT ·q41Gemv4VNNI(SB), NOSPLIT, $64-56
	QI8_PROLOGUE
	Q41_SCALES
	MOVL $0x0F0F0F0F, R9
	VPBROADCASTD R9, Z31
	TESTQ CX, CX
	JZ q41i8done
q41i8group:
	QI8_MASKS(16)
	KMOVQ 0(SP), K2
	KMOVQ 8(SP), K3
	KMOVQ 16(SP), K4
	KMOVQ 24(SP), K5
	QI8_XD
	QI8_SX
	Q41I8ACT(0, Z16, Z17)
	Q41I8ACT(128, Z18, Z19)
	Q41I8ACT(256, Z20, Z21)
	Q41I8ACT(384, Z22, Z23)
	ADDQ $512, DI
	CMPQ BX, $4
	JLE q41i8small
	Q41I8ROW(R10, (SI), (AX), Z4)
	Q41I8ROW(R11, (SI)(DX*1), (AX)(DX*1), Z5)
	Q41I8ROW(R12, (SI)(DX*2), (AX)(DX*2), Z6)
	LEAQ (SI)(DX*2), R9
	LEAQ (AX)(DX*2), R8
	Q41I8ROW(R13, (R9)(DX*1), (R8)(DX*1), Z7)
	JMP q41i8next
q41i8small:
	Q41I8ROW4(R10, (SI), (AX), Z4)
	Q41I8ROW4(R11, (SI)(DX*1), (AX)(DX*1), Z5)
	Q41I8ROW4(R12, (SI)(DX*2), (AX)(DX*2), Z6)
	LEAQ (SI)(DX*2), R9
	LEAQ (AX)(DX*2), R8
	Q41I8ROW4(R13, (R9)(DX*1), (R8)(DX*1), Z7)
q41i8next:
	ADDQ $32, SI
	ADDQ $32, AX
	SUBQ BX, CX
	JNZ q41i8group
q41i8done:
	MOVQ out+48(FP), R8
	QGEMV_EPILOGUE

// q80Gemv4VNNI(nb int, w *byte, ldw int, xq *int8, xd, sx, out *float32)
// sx is unused (Q8_0 has no minimums).
TEXT ·q80Gemv4VNNI(SB), NOSPLIT, $64-56
	QI8_PROLOGUE
	MOVQ CX, SI
	SHLQ $5, SI
	ADDQ R10, SI // d of row 0
	MOVL $0x80808080, R9
	VPBROADCASTD R9, Z27
	TESTQ CX, CX
	JZ q80i8done
q80i8group:
	QI8_MASKS(32)
	QBYTEMASK(4, 32, 32)
	QBYTEMASK(5, 32, 40)
	QBYTEMASK(6, 32, 48)
	QBYTEMASK(7, 32, 56)
	QI8_XD
	VPXORD 0(DI), Z27, Z16
	VPXORD 64(DI), Z27, Z17
	VPXORD 128(DI), Z27, Z18
	VPXORD 192(DI), Z27, Z19
	VPXORD 256(DI), Z27, Z20
	VPXORD 320(DI), Z27, Z21
	VPXORD 384(DI), Z27, Z22
	VPXORD 448(DI), Z27, Z23
	ADDQ $512, DI
	CMPQ BX, $4
	JLE q80i8small
	Q80I8ROW(R10, (SI), Z4)
	Q80I8ROW(R11, (SI)(DX*1), Z5)
	Q80I8ROW(R12, (SI)(DX*2), Z6)
	LEAQ (SI)(DX*2), R9
	Q80I8ROW(R13, (R9)(DX*1), Z7)
	JMP q80i8next
q80i8small:
	Q80I8ROW4(R10, (SI), Z4)
	Q80I8ROW4(R11, (SI)(DX*1), Z5)
	Q80I8ROW4(R12, (SI)(DX*2), Z6)
	LEAQ (SI)(DX*2), R9
	Q80I8ROW4(R13, (R9)(DX*1), Z7)
q80i8next:
	ADDQ $32, SI
	SUBQ BX, CX
	JNZ q80i8group
q80i8done:
	MOVQ out+48(FP), R8
	QGEMV_EPILOGUE

// qi8perm: result dword b (block b of the group) is QREDUCE's dword 4·(b mod 4) + b/4.
DATA qi8perm<>+0(SB)/4, $0
DATA qi8perm<>+4(SB)/4, $4
DATA qi8perm<>+8(SB)/4, $8
DATA qi8perm<>+12(SB)/4, $12
DATA qi8perm<>+16(SB)/4, $1
DATA qi8perm<>+20(SB)/4, $5
DATA qi8perm<>+24(SB)/4, $9
DATA qi8perm<>+28(SB)/4, $13
DATA qi8perm<>+32(SB)/4, $2
DATA qi8perm<>+36(SB)/4, $6
DATA qi8perm<>+40(SB)/4, $10
DATA qi8perm<>+44(SB)/4, $14
DATA qi8perm<>+48(SB)/4, $3
DATA qi8perm<>+52(SB)/4, $7
DATA qi8perm<>+56(SB)/4, $11
DATA qi8perm<>+60(SB)/4, $15
GLOBL qi8perm<>(SB), RODATA|NOPTR, $64

// q8QuantizeAVX512(nb int, x *float32, qs *int8, d, s *float32)
// The bits of quantizeQ8Go: the sum in QHSUM's order over x[l] + x[l+16],
// max|x| as bit patterns (VPMAXUD), VCVTPS2DQ's round half to even, and
// VPMOVSDB's saturation never reached (|x·127/amax| ≤ 127).
TEXT ·q8QuantizeAVX512(SB), NOSPLIT, $0-40
	MOVQ nb+0(FP), CX
	MOVQ x+8(FP), SI
	MOVQ qs+16(FP), DI
	MOVQ d+24(FP), R8
	MOVQ s+32(FP), R9
	MOVL $0x7fffffff, AX
	VPBROADCASTD AX, Z31
	MOVL $0x42fe0000, AX // 127.0
	VMOVD AX, X15
	TESTQ CX, CX
	JZ q8qdone
q8qblock:
	VMOVUPS (SI), Z0
	VMOVUPS 64(SI), Z1
	VADDPS Z1, Z0, Z2
	QHSUM(Z2, Y2, X2, (R9))
	VPANDD Z31, Z0, Z3
	VPANDD Z31, Z1, Z4
	VPMAXUD Z4, Z3, Z3
	VEXTRACTI64X4 $1, Z3, Y4
	VPMAXUD Y4, Y3, Y3
	VEXTRACTI128 $1, Y3, X4
	VPMAXUD X4, X3, X3
	VPSHUFD $0x4E, X3, X4
	VPMAXUD X4, X3, X3
	VPSHUFD $0xB1, X3, X4
	VPMAXUD X4, X3, X3
	VMOVD X3, AX
	CMPL AX, $0x03800000 // q8TinyBits: zero, or 127/amax would overflow
	JB q8qzero
	CMPL AX, $0x7f800000
	JAE q8qnan
	VMOVD AX, X5
	VDIVSS X15, X5, X6
	VMOVSS X6, (R8)
	VDIVSS X5, X15, X7
	VBROADCASTSS X7, Z7
	VMULPS Z7, Z0, Z0
	VMULPS Z7, Z1, Z1
	VCVTPS2DQ Z0, Z0
	VCVTPS2DQ Z1, Z1
	VPMOVSDB Z0, X0
	VPMOVSDB Z1, X1
	VMOVDQU X0, (DI)
	VMOVDQU X1, 16(DI)
	JMP q8qnext
q8qzero:
	MOVL $0, (R8)
	JMP q8qclear
q8qnan:
	MOVL $0x7fc00000, (R8)
q8qclear:
	VPXOR X0, X0, X0
	VMOVDQU X0, (DI)
	VMOVDQU X0, 16(DI)
q8qnext:
	ADDQ $128, SI
	ADDQ $32, DI
	ADDQ $4, R8
	ADDQ $4, R9
	DECQ CX
	JNZ q8qblock
q8qdone:
	VZEROUPPER
	RET

// q41flt is float32(i) for i < 16: VPERMPS turns a nibble into its float
// in one shuffle (only the index's low four bits count), the exact value
// that a mask and a conversion give.
DATA q41flt<>+0(SB)/4, $0x00000000
DATA q41flt<>+4(SB)/4, $0x3f800000
DATA q41flt<>+8(SB)/4, $0x40000000
DATA q41flt<>+12(SB)/4, $0x40400000
DATA q41flt<>+16(SB)/4, $0x40800000
DATA q41flt<>+20(SB)/4, $0x40a00000
DATA q41flt<>+24(SB)/4, $0x40c00000
DATA q41flt<>+28(SB)/4, $0x40e00000
DATA q41flt<>+32(SB)/4, $0x41000000
DATA q41flt<>+36(SB)/4, $0x41100000
DATA q41flt<>+40(SB)/4, $0x41200000
DATA q41flt<>+44(SB)/4, $0x41300000
DATA q41flt<>+48(SB)/4, $0x41400000
DATA q41flt<>+52(SB)/4, $0x41500000
DATA q41flt<>+56(SB)/4, $0x41600000
DATA q41flt<>+60(SB)/4, $0x41700000
GLOBL q41flt<>(SB), RODATA|NOPTR, $64
