//go:build !purego

#include "textflag.h"

// AVX-512 kernels. Register use follows the Go ABI0 rules: R14/R15 untouched.

// ---------------------------------------------------------------------------
// sgemm12x32AVX512(kc int, a *float32, lda int, b *float32, ldb int, c *float32, ldc int, acc int)
// C[12][32] (+)= Σ_p A[p][0:12]ᵀ · B[p][0:32] (A rows lda floats apart); 24 accumulators Z0–Z23, B in Z24/Z25,
// broadcasts alternate Z26/Z27 so that two rows' FMAs can be in flight.

#define ROW(off, bc, r0, r1) \
	VBROADCASTSS off(AX), bc; \
	VFMADD231PS Z24, bc, r0; \
	VFMADD231PS Z25, bc, r1

#define ACCST(r0, r1) \
	VADDPS (DI), r0, r0; \
	VADDPS 64(DI), r1, r1; \
	VMOVUPS r0, (DI); \
	VMOVUPS r1, 64(DI); \
	ADDQ SI, DI

#define ST(r0, r1) \
	VMOVUPS r0, (DI); \
	VMOVUPS r1, 64(DI); \
	ADDQ SI, DI

#define ZERO8 \
	VPXORD Z0, Z0, Z0; VPXORD Z1, Z1, Z1; VPXORD Z2, Z2, Z2; VPXORD Z3, Z3, Z3; \
	VPXORD Z4, Z4, Z4; VPXORD Z5, Z5, Z5; VPXORD Z6, Z6, Z6; VPXORD Z7, Z7, Z7

#define STORE8 \
	MOVQ c+40(FP), DI; \
	MOVQ ldc+48(FP), SI; \
	SHLQ $2, SI; \
	MOVQ acc+56(FP), R8; \
	TESTQ R8, R8; \
	JEQ nacc; \
	ACCST(Z0, Z1); ACCST(Z2, Z3); ACCST(Z4, Z5); ACCST(Z6, Z7); \
	VZEROUPPER; \
	RET; \
nacc: \
	ST(Z0, Z1); ST(Z2, Z3); ST(Z4, Z5); ST(Z6, Z7); \
	VZEROUPPER; \
	RET

#define ZERO24 \
	VPXORD Z0, Z0, Z0; VPXORD Z1, Z1, Z1; VPXORD Z2, Z2, Z2; VPXORD Z3, Z3, Z3; \
	VPXORD Z4, Z4, Z4; VPXORD Z5, Z5, Z5; VPXORD Z6, Z6, Z6; VPXORD Z7, Z7, Z7; \
	VPXORD Z8, Z8, Z8; VPXORD Z9, Z9, Z9; VPXORD Z10, Z10, Z10; VPXORD Z11, Z11, Z11; \
	VPXORD Z12, Z12, Z12; VPXORD Z13, Z13, Z13; VPXORD Z14, Z14, Z14; VPXORD Z15, Z15, Z15; \
	VPXORD Z16, Z16, Z16; VPXORD Z17, Z17, Z17; VPXORD Z18, Z18, Z18; VPXORD Z19, Z19, Z19; \
	VPXORD Z20, Z20, Z20; VPXORD Z21, Z21, Z21; VPXORD Z22, Z22, Z22; VPXORD Z23, Z23, Z23

// STORE24AT stores (acc ≠ 0: adds) the 24 accumulators into C, reading c,
// ldc and acc at the given frame offsets; STORE24 is the common frame,
// STORE24B the kernels with one more argument (pb) before c.
#define STORE24AT(coff, ldcoff, accoff) \
	MOVQ c+coff(FP), DI; \
	MOVQ ldc+ldcoff(FP), SI; \
	SHLQ $2, SI; \
	MOVQ acc+accoff(FP), R8; \
	TESTQ R8, R8; \
	JEQ nacc; \
	ACCST(Z0, Z1); ACCST(Z2, Z3); ACCST(Z4, Z5); ACCST(Z6, Z7); \
	ACCST(Z8, Z9); ACCST(Z10, Z11); ACCST(Z12, Z13); ACCST(Z14, Z15); \
	ACCST(Z16, Z17); ACCST(Z18, Z19); ACCST(Z20, Z21); ACCST(Z22, Z23); \
	VZEROUPPER; \
	RET; \
nacc: \
	ST(Z0, Z1); ST(Z2, Z3); ST(Z4, Z5); ST(Z6, Z7); \
	ST(Z8, Z9); ST(Z10, Z11); ST(Z12, Z13); ST(Z14, Z15); \
	ST(Z16, Z17); ST(Z18, Z19); ST(Z20, Z21); ST(Z22, Z23); \
	VZEROUPPER; \
	RET

#define STORE24 STORE24AT(40, 48, 56)
#define STORE24B STORE24AT(48, 56, 64)

#define GEMV_PROLOGUE \
	MOVQ k+0(FP), CX; \
	MOVQ w+8(FP), SI; \
	MOVQ ldw+16(FP), DX; \
	MOVQ x+24(FP), DI; \
	MOVQ out+32(FP), R8; \
	LEAQ (SI)(DX*SHIFT), R9; \
	LEAQ (R9)(DX*SHIFT), R10; \
	LEAQ (R10)(DX*SHIFT), R11; \
	VPXORD Z0, Z0, Z0; VPXORD Z1, Z1, Z1; VPXORD Z2, Z2, Z2; VPXORD Z3, Z3, Z3; \
	VPXORD Z4, Z4, Z4; VPXORD Z5, Z5, Z5; VPXORD Z6, Z6, Z6; VPXORD Z7, Z7, Z7; \
	XORQ AX, AX

#define GEMV_EPILOGUE \
	VADDPS Z1, Z0, Z0; \
	VADDPS Z3, Z2, Z2; \
	VADDPS Z5, Z4, Z4; \
	VADDPS Z7, Z6, Z6; \
	HSUM(Z0, Y0, X0, (R8)); \
	HSUM(Z2, Y2, X2, 4(R8)); \
	HSUM(Z4, Y4, X4, 8(R8)); \
	HSUM(Z6, Y6, X6, 12(R8)); \
	VZEROUPPER; \
	RET


#define GEMV44_PROLOGUE \
	MOVQ k+0(FP), CX; \
	MOVQ w+8(FP), SI; \
	MOVQ ldw+16(FP), DX; \
	MOVQ x+24(FP), DI; \
	MOVQ ldx+32(FP), R8; \
	LEAQ (SI)(DX*SHIFT), R9; \
	LEAQ (R9)(DX*SHIFT), R10; \
	LEAQ (R10)(DX*SHIFT), R11; \
	LEAQ (DI)(R8*4), R12; \
	LEAQ (R12)(R8*4), R13; \
	LEAQ (R13)(R8*4), BX; \
	MOVQ out+40(FP), R8; \
	ZERO16; \
	XORQ AX, AX

#define ZERO16 \
	VPXORD Z0, Z0, Z0; VPXORD Z1, Z1, Z1; VPXORD Z2, Z2, Z2; VPXORD Z3, Z3, Z3; \
	VPXORD Z4, Z4, Z4; VPXORD Z5, Z5, Z5; VPXORD Z6, Z6, Z6; VPXORD Z7, Z7, Z7; \
	VPXORD Z8, Z8, Z8; VPXORD Z9, Z9, Z9; VPXORD Z10, Z10, Z10; VPXORD Z11, Z11, Z11; \
	VPXORD Z12, Z12, Z12; VPXORD Z13, Z13, Z13; VPXORD Z14, Z14, Z14; VPXORD Z15, Z15, Z15

// GEMV44_STEP: 16 elements of four weight rows (Z16–Z19, loaded by LOAD) against
// four activation rows (Z20–Z23); accumulator 4·row+vector.
#define GEMV44_STEP(LOAD, WS) \
	LOAD((SI)(AX*WS), Z16); LOAD((R9)(AX*WS), Z17); LOAD((R10)(AX*WS), Z18); LOAD((R11)(AX*WS), Z19); \
	VMOVUPS (DI)(AX*4), Z20; VMOVUPS (R12)(AX*4), Z21; VMOVUPS (R13)(AX*4), Z22; VMOVUPS (BX)(AX*4), Z23; \
	VFMADD231PS Z20, Z16, Z0; VFMADD231PS Z21, Z16, Z1; VFMADD231PS Z22, Z16, Z2; VFMADD231PS Z23, Z16, Z3; \
	VFMADD231PS Z20, Z17, Z4; VFMADD231PS Z21, Z17, Z5; VFMADD231PS Z22, Z17, Z6; VFMADD231PS Z23, Z17, Z7; \
	VFMADD231PS Z20, Z18, Z8; VFMADD231PS Z21, Z18, Z9; VFMADD231PS Z22, Z18, Z10; VFMADD231PS Z23, Z18, Z11; \
	VFMADD231PS Z20, Z19, Z12; VFMADD231PS Z21, Z19, Z13; VFMADD231PS Z22, Z19, Z14; VFMADD231PS Z23, Z19, Z15

// GEMV44_EPILOGUE stores the sixteen sums of Z0–Z15 (out[j] = Σ lanes of Zj)
// with one transposing reduction instead of sixteen horizontal sums: within
// each 128-bit lane, 32- and 64-bit unpacks add four accumulators into one
// vector (lane k of group g holds the partial sums of Z4g..Z4g+3 over that
// lane), then two rounds of 128-bit shuffles add the four lanes: 36 + 9 ops
// where the horizontal sums took about 180 uops (by op count a tenth of a
// 4×4 call at K = 896; not separable from the load in a timing here).
#define RED4(a, b, c, d, u) \
	VUNPCKLPS b, a, Z16; VUNPCKHPS b, a, Z17; VADDPS Z17, Z16, Z16; \
	VUNPCKLPS d, c, Z18; VUNPCKHPS d, c, Z19; VADDPS Z19, Z18, Z18; \
	VUNPCKLPD Z18, Z16, Z17; VUNPCKHPD Z18, Z16, Z19; VADDPS Z19, Z17, u

#define GEMV44_EPILOGUE \
	RED4(Z0, Z1, Z2, Z3, Z20); \
	RED4(Z4, Z5, Z6, Z7, Z21); \
	RED4(Z8, Z9, Z10, Z11, Z22); \
	RED4(Z12, Z13, Z14, Z15, Z23); \
	VSHUFF32X4 $0x88, Z21, Z20, Z16; VSHUFF32X4 $0xdd, Z21, Z20, Z17; VADDPS Z17, Z16, Z24; \
	VSHUFF32X4 $0x88, Z23, Z22, Z16; VSHUFF32X4 $0xdd, Z23, Z22, Z17; VADDPS Z17, Z16, Z25; \
	VSHUFF32X4 $0x88, Z25, Z24, Z16; VSHUFF32X4 $0xdd, Z25, Z24, Z17; VADDPS Z17, Z16, Z16; \
	VMOVUPS Z16, (R8); \
	VZEROUPPER; \
	RET

#define LDF32(m, z) VMOVUPS m, z
#define LDF16(m, z) VCVTPH2PS m, z
#define LDBF16(m, z) VPMOVZXWD m, z; VPSLLD $16, z, z


// CALL_BF16: Z1 = bf16 (in the low half of each dword) of the floats in Z0.
// Rounding adds 0x7fff plus the lowest kept bit; NaNs (|x| > Inf) instead keep
// their top bits with the quiet bit forced. Uses K2, Z2, Z3 and constants Z20–Z24.
#define CALL_BF16 \
	VPSRLD $16, Z0, Z2; \
	VPANDD Z20, Z2, Z2; \
	VPADDD Z21, Z0, Z1; \
	VPADDD Z2, Z1, Z1; \
	VPSRLD $16, Z1, Z1; \
	VPANDD Z22, Z0, Z3; \
	VPCMPUD $6, Z23, Z3, K2; \
	VPSRLD $16, Z0, Z2; \
	VPORD Z24, Z2, Z2; \
	VMOVDQA32 Z2, K2, Z1

// TRANSPOSE16 transposes the 16×16 block in Z0–Z15 (row i in Zi) into Z0–Z15
// (column i in Zi) through Z16–Z31: 32-bit then 64-bit interleaves, then two
// rounds of 128-bit lane shuffles.
#define TRANSPOSE16 \
	VUNPCKLPS Z1, Z0, Z16; \
	VUNPCKHPS Z1, Z0, Z17; \
	VUNPCKLPS Z3, Z2, Z18; \
	VUNPCKHPS Z3, Z2, Z19; \
	VUNPCKLPS Z5, Z4, Z20; \
	VUNPCKHPS Z5, Z4, Z21; \
	VUNPCKLPS Z7, Z6, Z22; \
	VUNPCKHPS Z7, Z6, Z23; \
	VUNPCKLPS Z9, Z8, Z24; \
	VUNPCKHPS Z9, Z8, Z25; \
	VUNPCKLPS Z11, Z10, Z26; \
	VUNPCKHPS Z11, Z10, Z27; \
	VUNPCKLPS Z13, Z12, Z28; \
	VUNPCKHPS Z13, Z12, Z29; \
	VUNPCKLPS Z15, Z14, Z30; \
	VUNPCKHPS Z15, Z14, Z31; \
	VUNPCKLPD Z18, Z16, Z0; \
	VUNPCKHPD Z18, Z16, Z1; \
	VUNPCKLPD Z19, Z17, Z2; \
	VUNPCKHPD Z19, Z17, Z3; \
	VUNPCKLPD Z22, Z20, Z4; \
	VUNPCKHPD Z22, Z20, Z5; \
	VUNPCKLPD Z23, Z21, Z6; \
	VUNPCKHPD Z23, Z21, Z7; \
	VUNPCKLPD Z26, Z24, Z8; \
	VUNPCKHPD Z26, Z24, Z9; \
	VUNPCKLPD Z27, Z25, Z10; \
	VUNPCKHPD Z27, Z25, Z11; \
	VUNPCKLPD Z30, Z28, Z12; \
	VUNPCKHPD Z30, Z28, Z13; \
	VUNPCKLPD Z31, Z29, Z14; \
	VUNPCKHPD Z31, Z29, Z15; \
	VSHUFF32X4 $0x88, Z4, Z0, Z16; \
	VSHUFF32X4 $0xdd, Z4, Z0, Z20; \
	VSHUFF32X4 $0x88, Z5, Z1, Z17; \
	VSHUFF32X4 $0xdd, Z5, Z1, Z21; \
	VSHUFF32X4 $0x88, Z6, Z2, Z18; \
	VSHUFF32X4 $0xdd, Z6, Z2, Z22; \
	VSHUFF32X4 $0x88, Z7, Z3, Z19; \
	VSHUFF32X4 $0xdd, Z7, Z3, Z23; \
	VSHUFF32X4 $0x88, Z12, Z8, Z24; \
	VSHUFF32X4 $0xdd, Z12, Z8, Z28; \
	VSHUFF32X4 $0x88, Z13, Z9, Z25; \
	VSHUFF32X4 $0xdd, Z13, Z9, Z29; \
	VSHUFF32X4 $0x88, Z14, Z10, Z26; \
	VSHUFF32X4 $0xdd, Z14, Z10, Z30; \
	VSHUFF32X4 $0x88, Z15, Z11, Z27; \
	VSHUFF32X4 $0xdd, Z15, Z11, Z31; \
	VSHUFF32X4 $0x88, Z24, Z16, Z0; \
	VSHUFF32X4 $0xdd, Z24, Z16, Z8; \
	VSHUFF32X4 $0x88, Z25, Z17, Z1; \
	VSHUFF32X4 $0xdd, Z25, Z17, Z9; \
	VSHUFF32X4 $0x88, Z26, Z18, Z2; \
	VSHUFF32X4 $0xdd, Z26, Z18, Z10; \
	VSHUFF32X4 $0x88, Z27, Z19, Z3; \
	VSHUFF32X4 $0xdd, Z27, Z19, Z11; \
	VSHUFF32X4 $0x88, Z28, Z20, Z4; \
	VSHUFF32X4 $0xdd, Z28, Z20, Z12; \
	VSHUFF32X4 $0x88, Z29, Z21, Z5; \
	VSHUFF32X4 $0xdd, Z29, Z21, Z13; \
	VSHUFF32X4 $0x88, Z30, Z22, Z6; \
	VSHUFF32X4 $0xdd, Z30, Z22, Z14; \
	VSHUFF32X4 $0x88, Z31, Z23, Z7; \
	VSHUFF32X4 $0xdd, Z31, Z23, Z15

// PANEL_LOAD16(op) loads 16 source rows, R8 bytes apart from AX (rows 4–15
// through BX, R10, R11 = AX + 4, 8, 12 rows; R9 = 3·R8), into Z0–Z15 with op:
// VMOVUPS for f32 rows, VCVTPH2PS for f16 ones.
#define PANEL_LOAD16(op) \
	op (AX), Z0; \
	op (AX)(R8*1), Z1; \
	op (AX)(R8*2), Z2; \
	op (AX)(R9*1), Z3; \
	op (BX), Z4; \
	op (BX)(R8*1), Z5; \
	op (BX)(R8*2), Z6; \
	op (BX)(R9*1), Z7; \
	op (R10), Z8; \
	op (R10)(R8*1), Z9; \
	op (R10)(R8*2), Z10; \
	op (R10)(R9*1), Z11; \
	op (R11), Z12; \
	op (R11)(R8*1), Z13; \
	op (R11)(R8*2), Z14; \
	op (R11)(R9*1), Z15

// PANEL_STORE16 stores Z0–Z15, a transposed 16×16 tile, as rows 128 bytes
// apart at DI: 16 consecutive t of a 32-wide packed panel (one half of it).
#define PANEL_STORE16 \
	VMOVUPS Z0, 0(DI); \
	VMOVUPS Z1, 128(DI); \
	VMOVUPS Z2, 256(DI); \
	VMOVUPS Z3, 384(DI); \
	VMOVUPS Z4, 512(DI); \
	VMOVUPS Z5, 640(DI); \
	VMOVUPS Z6, 768(DI); \
	VMOVUPS Z7, 896(DI); \
	VMOVUPS Z8, 1024(DI); \
	VMOVUPS Z9, 1152(DI); \
	VMOVUPS Z10, 1280(DI); \
	VMOVUPS Z11, 1408(DI); \
	VMOVUPS Z12, 1536(DI); \
	VMOVUPS Z13, 1664(DI); \
	VMOVUPS Z14, 1792(DI); \
	VMOVUPS Z15, 1920(DI)

TEXT ·sgemm12x32AVX512(SB), NOSPLIT, $0-64
	MOVQ kc+0(FP), CX
	MOVQ a+8(FP), AX
	MOVQ lda+16(FP), R9
	SHLQ $2, R9
	MOVQ b+24(FP), BX
	MOVQ ldb+32(FP), DX
	SHLQ $2, DX
	ZERO24
	TESTQ CX, CX
	JEQ done

loop:
	VMOVUPS (BX), Z24
	VMOVUPS 64(BX), Z25
	PREFETCHT0 512(BX)
	ROW(0, Z26, Z0, Z1)
	ROW(4, Z27, Z2, Z3)
	ROW(8, Z26, Z4, Z5)
	ROW(12, Z27, Z6, Z7)
	ROW(16, Z26, Z8, Z9)
	ROW(20, Z27, Z10, Z11)
	ROW(24, Z26, Z12, Z13)
	ROW(28, Z27, Z14, Z15)
	ROW(32, Z26, Z16, Z17)
	ROW(36, Z27, Z18, Z19)
	ROW(40, Z26, Z20, Z21)
	ROW(44, Z27, Z22, Z23)
	ADDQ R9, AX
	ADDQ DX, BX
	DECQ CX
	JNZ loop

done:
	STORE24

// ---------------------------------------------------------------------------
// sgemmBF16AVX512(kp int, a, b *uint16, c *float32, ldc int, acc int)
// The same 12×32 tile with VDPBF16PS: each step consumes a pair of k. A is packed
// [kp][12][2], B [kp][32][2]; the assembler lacks the mnemonic, so it is encoded
// by hand (EVEX.512.F3.0F38.W0 52 /r, register form).

// VDPBF16PS zmm(d), zmm(v), zmm(r): d += pairwise bf16 dot of v and r.
#define DPBF(P0, P1, P2, MODRM) BYTE $0x62; BYTE $P0; BYTE $P1; BYTE $P2; BYTE $0x52; BYTE $MODRM

#define ROWBF(off, bc, e0, e1) \
	VPBROADCASTD off(AX), bc; \
	e0; \
	e1

TEXT ·sgemmBF16AVX512(SB), NOSPLIT, $0-48
	MOVQ kp+0(FP), CX
	MOVQ a+8(FP), AX
	MOVQ b+16(FP), BX
	ZERO24
	TESTQ CX, CX
	JEQ bdone

bloop:
	VMOVDQU32 (BX), Z24
	VMOVDQU32 64(BX), Z25
	PREFETCHT0 512(BX)
#include "dpbf16_body.h"
	ADDQ $48, AX
	ADDQ $128, BX
	DECQ CX
	JNZ bloop

bdone:
	MOVQ c+24(FP), DI
	MOVQ ldc+32(FP), SI
	SHLQ $2, SI
	MOVQ acc+40(FP), R8
	TESTQ R8, R8
	JEQ bnacc
	ACCST(Z0, Z1); ACCST(Z2, Z3); ACCST(Z4, Z5); ACCST(Z6, Z7)
	ACCST(Z8, Z9); ACCST(Z10, Z11); ACCST(Z12, Z13); ACCST(Z14, Z15)
	ACCST(Z16, Z17); ACCST(Z18, Z19); ACCST(Z20, Z21); ACCST(Z22, Z23)
	VZEROUPPER
	RET
bnacc:
	ST(Z0, Z1); ST(Z2, Z3); ST(Z4, Z5); ST(Z6, Z7)
	ST(Z8, Z9); ST(Z10, Z11); ST(Z12, Z13); ST(Z14, Z15)
	ST(Z16, Z17); ST(Z18, Z19); ST(Z20, Z21); ST(Z22, Z23)
	VZEROUPPER
	RET

// ---------------------------------------------------------------------------
// gemv4*: four weight rows (SI, R9, R10, R11) against one activation vector (DI),
// 32 elements per step, two accumulators per row; k is a positive multiple of 32.

// HSUM reduces zr (one of Z0–Z15; yr, xr its halves) into the float at dst.
#define HSUM(zr, yr, xr, dst) \
	VEXTRACTF64X4 $1, zr, Y30; \
	VADDPS Y30, yr, yr; \
	VEXTRACTF32X4 $1, yr, X31; \
	VADDPS X31, xr, xr; \
	VHADDPS xr, xr, xr; \
	VHADDPS xr, xr, xr; \
	MOVSS xr, dst

#define SHIFT 4
TEXT ·gemv4F32AVX512(SB), NOSPLIT, $0-40
	GEMV_PROLOGUE
gf32:
	VMOVUPS (DI)(AX*4), Z16
	VMOVUPS 64(DI)(AX*4), Z17
	VFMADD231PS (SI)(AX*4), Z16, Z0
	VFMADD231PS 64(SI)(AX*4), Z17, Z1
	VFMADD231PS (R9)(AX*4), Z16, Z2
	VFMADD231PS 64(R9)(AX*4), Z17, Z3
	VFMADD231PS (R10)(AX*4), Z16, Z4
	VFMADD231PS 64(R10)(AX*4), Z17, Z5
	VFMADD231PS (R11)(AX*4), Z16, Z6
	VFMADD231PS 64(R11)(AX*4), Z17, Z7
	ADDQ $32, AX
	CMPQ AX, CX
	JLT gf32
	GEMV_EPILOGUE
#undef SHIFT

#define SHIFT 2
#define GEMV16(LOAD) \
	VMOVUPS (DI)(AX*4), Z16; \
	VMOVUPS 64(DI)(AX*4), Z17; \
	LOAD((SI)(AX*2), Z18); LOAD(32(SI)(AX*2), Z19); \
	LOAD((R9)(AX*2), Z20); LOAD(32(R9)(AX*2), Z21); \
	LOAD((R10)(AX*2), Z22); LOAD(32(R10)(AX*2), Z23); \
	LOAD((R11)(AX*2), Z24); LOAD(32(R11)(AX*2), Z25); \
	VFMADD231PS Z18, Z16, Z0; VFMADD231PS Z19, Z17, Z1; \
	VFMADD231PS Z20, Z16, Z2; VFMADD231PS Z21, Z17, Z3; \
	VFMADD231PS Z22, Z16, Z4; VFMADD231PS Z23, Z17, Z5; \
	VFMADD231PS Z24, Z16, Z6; VFMADD231PS Z25, Z17, Z7

TEXT ·gemv4F16AVX512(SB), NOSPLIT, $0-40
	GEMV_PROLOGUE
gf16:
	GEMV16(LDF16)
	ADDQ $32, AX
	CMPQ AX, CX
	JLT gf16
	GEMV_EPILOGUE

// gemv4BF16AVX512 widens bf16 without a shuffle per weight vector: one 64-byte
// load holds 32 weights, whose odd elements are already f32 once the low halves
// are masked off (VPANDD) and whose even ones are f32 after VPSLLD $16. The
// activation block is split into its even and odd elements instead (two
// VPERMT2PS per 32 elements, shared by the four rows), so each row costs one
// load, two integer ops and two FMAs per 32 weights, against two VPMOVZXWD
// (shuffle port), two shifts and two FMAs the plain widening needs: the shuffle
// port bounded the old kernel below the memory rate.
#define BF16ROW(R, T, U, ACCE, ACCO) \
	VMOVDQU32 (R)(AX*2), T; \
	VPSLLD $16, T, U; \
	VPANDD Z26, T, T; \
	VFMADD231PS U, Z16, ACCE; \
	VFMADD231PS T, Z17, ACCO

TEXT ·gemv4BF16AVX512(SB), NOSPLIT, $0-40
	GEMV_PROLOGUE
	VMOVDQU32 bf16split<>+0(SB), Z28
	VMOVDQU32 bf16split<>+64(SB), Z29
	MOVL $0xffff0000, BX
	VPBROADCASTD BX, Z26
gbf16:
	VMOVUPS (DI)(AX*4), Z16
	VMOVUPS (DI)(AX*4), Z17
	VPERMT2PS 64(DI)(AX*4), Z28, Z16
	VPERMT2PS 64(DI)(AX*4), Z29, Z17
	BF16ROW(SI, Z18, Z19, Z0, Z1)
	BF16ROW(R9, Z20, Z21, Z2, Z3)
	BF16ROW(R10, Z22, Z23, Z4, Z5)
	BF16ROW(R11, Z24, Z25, Z6, Z7)
	ADDQ $32, AX
	CMPQ AX, CX
	JLT gbf16
	GEMV_EPILOGUE
#undef SHIFT

// bf16split: VPERMT2PS indices of the even (first 16) and odd (last 16)
// elements of a 32-float block held in two registers.
DATA bf16split<>+0(SB)/4, $0
DATA bf16split<>+4(SB)/4, $2
DATA bf16split<>+8(SB)/4, $4
DATA bf16split<>+12(SB)/4, $6
DATA bf16split<>+16(SB)/4, $8
DATA bf16split<>+20(SB)/4, $10
DATA bf16split<>+24(SB)/4, $12
DATA bf16split<>+28(SB)/4, $14
DATA bf16split<>+32(SB)/4, $16
DATA bf16split<>+36(SB)/4, $18
DATA bf16split<>+40(SB)/4, $20
DATA bf16split<>+44(SB)/4, $22
DATA bf16split<>+48(SB)/4, $24
DATA bf16split<>+52(SB)/4, $26
DATA bf16split<>+56(SB)/4, $28
DATA bf16split<>+60(SB)/4, $30
DATA bf16split<>+64(SB)/4, $1
DATA bf16split<>+68(SB)/4, $3
DATA bf16split<>+72(SB)/4, $5
DATA bf16split<>+76(SB)/4, $7
DATA bf16split<>+80(SB)/4, $9
DATA bf16split<>+84(SB)/4, $11
DATA bf16split<>+88(SB)/4, $13
DATA bf16split<>+92(SB)/4, $15
DATA bf16split<>+96(SB)/4, $17
DATA bf16split<>+100(SB)/4, $19
DATA bf16split<>+104(SB)/4, $21
DATA bf16split<>+108(SB)/4, $23
DATA bf16split<>+112(SB)/4, $25
DATA bf16split<>+116(SB)/4, $27
DATA bf16split<>+120(SB)/4, $29
DATA bf16split<>+124(SB)/4, $31
GLOBL bf16split<>(SB), RODATA|NOPTR, $128

// ---------------------------------------------------------------------------
// Element-wise kernels: 16 lanes per step; the last partial step uses mask K1.

// TAILMASK sets K1 to the low CX bits (CX < 16); clobbers R12.
#define TAILMASK \
	MOVQ $1, R12; \
	SHLQ CX, R12; \
	DECQ R12; \
	KMOVW R12, K1

// dotAVX512(a, b []float32) float32
TEXT ·dotAVX512(SB), NOSPLIT, $0-52
	MOVQ a_base+0(FP), SI
	MOVQ a_len+8(FP), CX
	MOVQ b_base+24(FP), DI
	VPXORD Z0, Z0, Z0
	VPXORD Z1, Z1, Z1
	VPXORD Z2, Z2, Z2
	VPXORD Z3, Z3, Z3
	CMPQ CX, $64
	JLT d16
d64:
	VMOVUPS (SI), Z4
	VMOVUPS 64(SI), Z5
	VMOVUPS 128(SI), Z6
	VMOVUPS 192(SI), Z7
	VFMADD231PS (DI), Z4, Z0
	VFMADD231PS 64(DI), Z5, Z1
	VFMADD231PS 128(DI), Z6, Z2
	VFMADD231PS 192(DI), Z7, Z3
	ADDQ $256, SI
	ADDQ $256, DI
	SUBQ $64, CX
	CMPQ CX, $64
	JGE d64
d16:
	CMPQ CX, $16
	JLT dtail
	VMOVUPS (SI), Z4
	VFMADD231PS (DI), Z4, Z0
	ADDQ $64, SI
	ADDQ $64, DI
	SUBQ $16, CX
	JMP d16
dtail:
	TESTQ CX, CX
	JEQ dsum
	TAILMASK
	VMOVUPS.Z (SI), K1, Z4
	VMOVUPS.Z (DI), K1, Z5
	VFMADD231PS Z5, Z4, Z1
dsum:
	VADDPS Z1, Z0, Z0
	VADDPS Z3, Z2, Z2
	VADDPS Z2, Z0, Z0
	HSUM(Z0, Y0, X0, ret+48(FP))
	VZEROUPPER
	RET

// axpyAVX512(a float32, x, y []float32): y += a·x
TEXT ·axpyAVX512(SB), NOSPLIT, $0-56
	VBROADCASTSS a+0(FP), Z0
	MOVQ x_base+8(FP), SI
	MOVQ x_len+16(FP), CX
	MOVQ y_base+32(FP), DI
ax16:
	CMPQ CX, $16
	JLT axtail
	VMOVUPS (DI), Z1
	VFMADD231PS (SI), Z0, Z1
	VMOVUPS Z1, (DI)
	ADDQ $64, SI
	ADDQ $64, DI
	SUBQ $16, CX
	JMP ax16
axtail:
	TESTQ CX, CX
	JEQ axdone
	TAILMASK
	VMOVUPS.Z (SI), K1, Z2
	VMOVUPS.Z (DI), K1, Z1
	VFMADD231PS Z2, Z0, Z1
	VMOVUPS Z1, K1, (DI)
axdone:
	VZEROUPPER
	RET

// addAVX512(dst, x []float32): dst += x
TEXT ·addAVX512(SB), NOSPLIT, $0-48
	MOVQ dst_base+0(FP), DI
	MOVQ dst_len+8(FP), CX
	MOVQ x_base+24(FP), SI
ad16:
	CMPQ CX, $16
	JLT adtail
	VMOVUPS (DI), Z1
	VADDPS (SI), Z1, Z1
	VMOVUPS Z1, (DI)
	ADDQ $64, SI
	ADDQ $64, DI
	SUBQ $16, CX
	JMP ad16
adtail:
	TESTQ CX, CX
	JEQ addone
	TAILMASK
	VMOVUPS.Z (SI), K1, Z2
	VMOVUPS.Z (DI), K1, Z1
	VADDPS Z2, Z1, Z1
	VMOVUPS Z1, K1, (DI)
addone:
	VZEROUPPER
	RET

// scaleMulAVX512(dst, x, w []float32, s float32): dst = x·s·w
TEXT ·scaleMulAVX512(SB), NOSPLIT, $0-76
	MOVQ dst_base+0(FP), DI
	MOVQ x_base+24(FP), SI
	MOVQ x_len+32(FP), CX
	MOVQ w_base+48(FP), DX
	VBROADCASTSS s+72(FP), Z0
sm16:
	CMPQ CX, $16
	JLT smtail
	VMULPS (SI), Z0, Z1
	VMULPS (DX), Z1, Z1
	VMOVUPS Z1, (DI)
	ADDQ $64, SI
	ADDQ $64, DI
	ADDQ $64, DX
	SUBQ $16, CX
	JMP sm16
smtail:
	TESTQ CX, CX
	JEQ smdone
	TAILMASK
	VMOVUPS.Z (SI), K1, Z1
	VMOVUPS.Z (DX), K1, Z2
	VMULPS Z0, Z1, Z1
	VMULPS Z2, Z1, Z1
	VMOVUPS Z1, K1, (DI)
smdone:
	VZEROUPPER
	RET

// scaleAVX512(x []float32, s float32): x *= s
TEXT ·scaleAVX512(SB), NOSPLIT, $0-28
	MOVQ x_base+0(FP), DI
	MOVQ x_len+8(FP), CX
	VBROADCASTSS s+24(FP), Z0
sc16:
	CMPQ CX, $16
	JLT sctail
	VMULPS (DI), Z0, Z1
	VMOVUPS Z1, (DI)
	ADDQ $64, DI
	SUBQ $16, CX
	JMP sc16
sctail:
	TESTQ CX, CX
	JEQ scdone
	TAILMASK
	VMOVUPS.Z (DI), K1, Z1
	VMULPS Z0, Z1, Z1
	VMOVUPS Z1, K1, (DI)
scdone:
	VZEROUPPER
	RET

// Exponential: clamp, n = round(x·log2 e), r = x − n·ln2 in two parts (the
// Cephes expf reduction), a degree-5 polynomial for e^r on [−ln2/2, ln2/2] (a
// minimax fit of relative error, 0.95e-7 with these float32 coefficients;
// Cephes' degree 7 took three instructions more), then VSCALEFPS multiplies by
// 2^n. Max relative error against math.Exp 1.35 ulp (1.6e-7) over the range
// softmax sees, [−87.3, 8] (TestSoftmaxExpAccuracy); exactly 0 from −104 down
// (and at −Inf), so masked logits weigh nothing. Constants live in Z20–Z30;
// x in z, temporaries t and n.
DATA expc<>+0(SB)/4, $0x3fb8aa3b  // log2 e
DATA expc<>+4(SB)/4, $0x3f318000  // ln2 high part
DATA expc<>+8(SB)/4, $0xb95e8083  // ln2 low part
DATA expc<>+12(SB)/4, $0x3c07d417 // c4
DATA expc<>+16(SB)/4, $0x3d2b9d30 // c3
DATA expc<>+20(SB)/4, $0x3e2aad35 // c2
DATA expc<>+24(SB)/4, $0x3efffee3 // c1
DATA expc<>+28(SB)/4, $0x3f7ffffb // c0
DATA expc<>+32(SB)/4, $0x3f800000 // 1
DATA expc<>+36(SB)/4, $0xc2d00000 // lower clamp −104: exp gives exactly 0 below, so exp(−Inf) = 0
DATA expc<>+40(SB)/4, $0x42b17217 // upper clamp
GLOBL expc<>(SB), RODATA|NOPTR, $44

#define EXPCONST \
	VBROADCASTSS expc<>+0(SB), Z20; \
	VBROADCASTSS expc<>+4(SB), Z21; \
	VBROADCASTSS expc<>+8(SB), Z22; \
	VBROADCASTSS expc<>+12(SB), Z23; \
	VBROADCASTSS expc<>+16(SB), Z24; \
	VBROADCASTSS expc<>+20(SB), Z25; \
	VBROADCASTSS expc<>+24(SB), Z26; \
	VBROADCASTSS expc<>+28(SB), Z27; \
	VBROADCASTSS expc<>+32(SB), Z28; \
	VBROADCASTSS expc<>+36(SB), Z29; \
	VBROADCASTSS expc<>+40(SB), Z30

#define EXP(z, t, n) \
	VMAXPS Z29, z, z; \
	VMINPS Z30, z, z; \
	VMULPS Z20, z, n; \
	VRNDSCALEPS $0, n, n; \
	VFNMADD231PS Z21, n, z; \
	VFNMADD231PS Z22, n, z; \
	VMOVAPS Z23, t; \
	VFMADD213PS Z24, z, t; \
	VFMADD213PS Z25, z, t; \
	VFMADD213PS Z26, z, t; \
	VFMADD213PS Z27, z, t; \
	VFMADD213PS Z28, z, t; \
	VSCALEFPS n, t, z

// siluMulAVX512(gate, up []float32): gate = gate/(1+exp(−gate))·up
TEXT ·siluMulAVX512(SB), NOSPLIT, $0-48
	MOVQ gate_base+0(FP), DI
	MOVQ gate_len+8(FP), CX
	MOVQ up_base+24(FP), SI
	EXPCONST
	VPXORD Z18, Z18, Z18
si16:
	CMPQ CX, $16
	JLT sitail
	VMOVUPS (DI), Z0
	VSUBPS Z0, Z18, Z1
	EXP(Z1, Z2, Z3)
	VADDPS Z28, Z1, Z1
	VDIVPS Z1, Z0, Z0
	VMULPS (SI), Z0, Z0
	VMOVUPS Z0, (DI)
	ADDQ $64, SI
	ADDQ $64, DI
	SUBQ $16, CX
	JMP si16
sitail:
	TESTQ CX, CX
	JEQ sidone
	TAILMASK
	VMOVUPS.Z (DI), K1, Z0
	VMOVUPS.Z (SI), K1, Z4
	VSUBPS Z0, Z18, Z1
	EXP(Z1, Z2, Z3)
	VADDPS Z28, Z1, Z1
	VDIVPS Z1, Z0, Z0
	VMULPS Z4, Z0, Z0
	VMOVUPS Z0, K1, (DI)
sidone:
	VZEROUPPER
	RET

// expSubAVX512(x []float32, m float32) float32: x = exp(x−m), returns Σx
TEXT ·expSubAVX512(SB), NOSPLIT, $0-36
	MOVQ x_base+0(FP), DI
	MOVQ x_len+8(FP), CX
	VBROADCASTSS m+24(FP), Z17
	EXPCONST
	VPXORD Z16, Z16, Z16
es16:
	CMPQ CX, $16
	JLT estail
	VMOVUPS (DI), Z0
	VSUBPS Z17, Z0, Z0
	EXP(Z0, Z2, Z3)
	VMOVUPS Z0, (DI)
	VADDPS Z0, Z16, Z16
	ADDQ $64, DI
	SUBQ $16, CX
	JMP es16
estail:
	TESTQ CX, CX
	JEQ esdone
	TAILMASK
	VMOVUPS.Z (DI), K1, Z0
	VSUBPS Z17, Z0, Z0
	EXP(Z0, Z2, Z3)
	VMOVAPS.Z Z0, K1, Z0
	VMOVUPS Z0, K1, (DI)
	VADDPS Z0, Z16, Z16
esdone:
	VMOVAPS Z16, Z0
	HSUM(Z0, Y0, X0, ret+32(FP))
	VZEROUPPER
	RET

// bf16F32AVX512(dst []float32, src []uint16)
TEXT ·bf16F32AVX512(SB), NOSPLIT, $0-48
	MOVQ dst_base+0(FP), DI
	MOVQ src_base+24(FP), SI
	MOVQ src_len+32(FP), CX
bc16:
	CMPQ CX, $16
	JLT bctail
	VPMOVZXWD (SI), Z0
	VPSLLD $16, Z0, Z0
	VMOVUPS Z0, (DI)
	ADDQ $32, SI
	ADDQ $64, DI
	SUBQ $16, CX
	JMP bc16
bctail:
	TESTQ CX, CX
	JEQ bcdone
	TAILMASK
	VPMOVZXWD.Z (SI), K1, Z0
	VPSLLD $16, Z0, Z0
	VMOVUPS Z0, K1, (DI)
bcdone:
	VZEROUPPER
	RET

// f16F32AVX512(dst []float32, src []uint16)
TEXT ·f16F32AVX512(SB), NOSPLIT, $0-48
	MOVQ dst_base+0(FP), DI
	MOVQ src_base+24(FP), SI
	MOVQ src_len+32(FP), CX
hc16:
	CMPQ CX, $16
	JLT hctail
	VCVTPH2PS (SI), Z0
	VMOVUPS Z0, (DI)
	ADDQ $32, SI
	ADDQ $64, DI
	SUBQ $16, CX
	JMP hc16
hctail:
	TESTQ CX, CX
	JEQ hcdone
	TAILMASK
	VCVTPH2PS.Z (SI), K1, Z0
	VMOVUPS Z0, K1, (DI)
hcdone:
	VZEROUPPER
	RET

// f32F16AVX512(dst []uint16, src []float32): whole blocks of 16 only; the caller
// converts the tail.
TEXT ·f32F16AVX512(SB), NOSPLIT, $0-48
	MOVQ dst_base+0(FP), DI
	MOVQ src_base+24(FP), SI
	MOVQ src_len+32(FP), CX
fh16:
	CMPQ CX, $16
	JLT fhdone
	VMOVUPS (SI), Z0
	VCVTPS2PH $0, Z0, Y1
	VMOVDQU Y1, (DI)
	ADDQ $64, SI
	ADDQ $32, DI
	SUBQ $16, CX
	JMP fh16
fhdone:
	VZEROUPPER
	RET

// vmaxAVX512(dst, x []float32): dst = max(dst, x)
TEXT ·vmaxAVX512(SB), NOSPLIT, $0-48
	MOVQ dst_base+0(FP), DI
	MOVQ dst_len+8(FP), CX
	MOVQ x_base+24(FP), SI
vm16:
	CMPQ CX, $16
	JLT vmtail
	VMOVUPS (DI), Z1
	VMAXPS (SI), Z1, Z1
	VMOVUPS Z1, (DI)
	ADDQ $64, SI
	ADDQ $64, DI
	SUBQ $16, CX
	JMP vm16
vmtail:
	TESTQ CX, CX
	JEQ vmdone
	TAILMASK
	VMOVUPS.Z (SI), K1, Z2
	VMOVUPS.Z (DI), K1, Z1
	VMAXPS Z2, Z1, Z1
	VMOVUPS Z1, K1, (DI)
vmdone:
	VZEROUPPER
	RET

// expSubVAX512(x, m, acc []float32): x = exp(x − m); acc += x
TEXT ·expSubVAVX512(SB), NOSPLIT, $0-72
	MOVQ x_base+0(FP), DI
	MOVQ x_len+8(FP), CX
	MOVQ m_base+24(FP), SI
	MOVQ acc_base+48(FP), DX
	EXPCONST
ev16:
	CMPQ CX, $16
	JLT evtail
	VMOVUPS (DI), Z0
	VSUBPS (SI), Z0, Z0
	EXP(Z0, Z2, Z3)
	VMOVUPS Z0, (DI)
	VADDPS (DX), Z0, Z1
	VMOVUPS Z1, (DX)
	ADDQ $64, SI
	ADDQ $64, DI
	ADDQ $64, DX
	SUBQ $16, CX
	JMP ev16
evtail:
	TESTQ CX, CX
	JEQ evdone
	TAILMASK
	VMOVUPS.Z (DI), K1, Z0
	VMOVUPS.Z (SI), K1, Z4
	VSUBPS Z4, Z0, Z0
	EXP(Z0, Z2, Z3)
	VMOVUPS Z0, K1, (DI)
	VMOVUPS.Z (DX), K1, Z1
	VADDPS Z0, Z1, Z1
	VMOVUPS Z1, K1, (DX)
evdone:
	VZEROUPPER
	RET

// fmaPeakAVX512(iters int): 24 independent chains of VFMADD231PS zmm, 24 FMAs
// (768 flops) per iteration; used by BenchmarkFMAPeak to measure the machine.
TEXT ·fmaPeakAVX512(SB), NOSPLIT, $0-8
	MOVQ iters+0(FP), CX
	ZERO24
	VPXORD Z24, Z24, Z24
	VPXORD Z25, Z25, Z25
peak:
	VFMADD231PS Z24, Z25, Z0; VFMADD231PS Z24, Z25, Z1; VFMADD231PS Z24, Z25, Z2
	VFMADD231PS Z24, Z25, Z3; VFMADD231PS Z24, Z25, Z4; VFMADD231PS Z24, Z25, Z5
	VFMADD231PS Z24, Z25, Z6; VFMADD231PS Z24, Z25, Z7; VFMADD231PS Z24, Z25, Z8
	VFMADD231PS Z24, Z25, Z9; VFMADD231PS Z24, Z25, Z10; VFMADD231PS Z24, Z25, Z11
	VFMADD231PS Z24, Z25, Z12; VFMADD231PS Z24, Z25, Z13; VFMADD231PS Z24, Z25, Z14
	VFMADD231PS Z24, Z25, Z15; VFMADD231PS Z24, Z25, Z16; VFMADD231PS Z24, Z25, Z17
	VFMADD231PS Z24, Z25, Z18; VFMADD231PS Z24, Z25, Z19; VFMADD231PS Z24, Z25, Z20
	VFMADD231PS Z24, Z25, Z21; VFMADD231PS Z24, Z25, Z22; VFMADD231PS Z24, Z25, Z23
	DECQ CX
	JNZ peak
	VZEROUPPER
	RET

// gemv4x4*AVX512(k int, w *T, ldw int, x *float32, ldx int, out *float32): four
// weight rows against four activation rows (ldx floats apart), so each widened
// weight vector serves four FMAs; out[4·r+i] = row r · vector i. k is a positive
// multiple of 32.
#define SHIFT 4
TEXT ·gemv4x4F32AVX512(SB), NOSPLIT, $0-48
	GEMV44_PROLOGUE
g44f32:
	GEMV44_STEP(LDF32, 4)
	ADDQ $16, AX
	CMPQ AX, CX
	JLT g44f32
	GEMV44_EPILOGUE
#undef SHIFT

#define SHIFT 2
TEXT ·gemv4x4F16AVX512(SB), NOSPLIT, $0-48
	GEMV44_PROLOGUE
g44f16:
	GEMV44_STEP(LDF16, 2)
	ADDQ $16, AX
	CMPQ AX, CX
	JLT g44f16
	GEMV44_EPILOGUE

TEXT ·gemv4x4BF16AVX512(SB), NOSPLIT, $0-48
	GEMV44_PROLOGUE
g44bf16:
	GEMV44_STEP(LDBF16, 2)
	ADDQ $16, AX
	CMPQ AX, CX
	JLT g44bf16
	GEMV44_EPILOGUE
#undef SHIFT

// f32BF16AVX512(dst []uint16, src []float32): round to nearest even exactly as
// F32ToBF16 (NaN stays NaN with the quiet bit set).
DATA bfc<>+0(SB)/4, $0x00000001
DATA bfc<>+4(SB)/4, $0x00007fff
DATA bfc<>+8(SB)/4, $0x7fffffff
DATA bfc<>+12(SB)/4, $0x7f800000
DATA bfc<>+16(SB)/4, $0x00000040
GLOBL bfc<>(SB), RODATA|NOPTR, $20

TEXT ·f32BF16AVX512(SB), NOSPLIT, $0-48
	MOVQ dst_base+0(FP), DI
	MOVQ src_base+24(FP), SI
	MOVQ src_len+32(FP), CX
	VPBROADCASTD bfc<>+0(SB), Z20
	VPBROADCASTD bfc<>+4(SB), Z21
	VPBROADCASTD bfc<>+8(SB), Z22
	VPBROADCASTD bfc<>+12(SB), Z23
	VPBROADCASTD bfc<>+16(SB), Z24
fb16:
	CMPQ CX, $16
	JLT fbtail
	VMOVDQU32 (SI), Z0
	CALL_BF16
	VPMOVDW Z1, (DI)
	ADDQ $64, SI
	ADDQ $32, DI
	SUBQ $16, CX
	JMP fb16
fbtail:
	TESTQ CX, CX
	JEQ fbdone
	TAILMASK
	VMOVDQU32.Z (SI), K1, Z0
	CALL_BF16
	VPMOVDW Z1, K1, (DI)
fbdone:
	VZEROUPPER
	RET

// packPanel32AVX512(kc16 int, src *float32, lds int, dst *float32): the transposition
// of packB for a full panel, dst[t·32+r] = src[r·lds+t] for r < 32 and t < kc16 (a
// multiple of 16), as 16×16 register transposes.
TEXT ·packPanel32AVX512(SB), NOSPLIT, $0-32
	MOVQ kc16+0(FP), CX
	MOVQ src+8(FP), SI
	MOVQ lds+16(FP), R8
	SHLQ $2, R8
	LEAQ (R8)(R8*2), R9
	MOVQ dst+24(FP), DX
	SHRQ $4, CX
	JEQ ppdone
	XORQ R12, R12 // half: rows 0–15, then 16–31
pphalf:
	MOVQ SI, AX
	LEAQ (AX)(R8*4), BX
	LEAQ (BX)(R8*4), R10
	LEAQ (R10)(R8*4), R11
	MOVQ DX, DI
	MOVQ CX, R13
ppblk:
	PANEL_LOAD16(VMOVUPS)
	TRANSPOSE16
	PANEL_STORE16
	ADDQ $64, AX
	ADDQ $64, BX
	ADDQ $64, R10
	ADDQ $64, R11
	ADDQ $2048, DI
	DECQ R13
	JNZ ppblk
	INCQ R12
	CMPQ R12, $2
	JEQ ppdone
	LEAQ (R11)(R8*4), SI // row 16 of this column block...
	SHLQ $6, CX          // ...minus the columns walked: rows advance 16·lds
	SUBQ CX, SI
	SHRQ $6, CX
	ADDQ $64, DX
	JMP pphalf
ppdone:
	VZEROUPPER
	RET


// packRows12AVX512(d16 int, src *float32, lds int, dst *float32): dst[d·12+r] =
// src[r·lds+d] for r < 12 and d < d16 (a multiple of 16): the attention K tile
// layout, a 16×16 transpose with rows 12–15 zero and 12-lane masked stores.
TEXT ·packRows12AVX512(SB), NOSPLIT, $0-32
	MOVQ d16+0(FP), CX
	MOVQ src+8(FP), AX
	MOVQ lds+16(FP), R8
	SHLQ $2, R8
	LEAQ (R8)(R8*2), R9
	MOVQ dst+24(FP), DI
	LEAQ (AX)(R8*4), BX
	LEAQ (BX)(R8*4), R10
	MOVQ $0x0fff, R11
	KMOVW R11, K3
	SHRQ $4, CX
	JEQ prdone
prblk:
	VMOVUPS (AX), Z0
	VMOVUPS (AX)(R8*1), Z1
	VMOVUPS (AX)(R8*2), Z2
	VMOVUPS (AX)(R9*1), Z3
	VMOVUPS (BX), Z4
	VMOVUPS (BX)(R8*1), Z5
	VMOVUPS (BX)(R8*2), Z6
	VMOVUPS (BX)(R9*1), Z7
	VMOVUPS (R10), Z8
	VMOVUPS (R10)(R8*1), Z9
	VMOVUPS (R10)(R8*2), Z10
	VMOVUPS (R10)(R9*1), Z11
	VPXORD Z12, Z12, Z12
	VPXORD Z13, Z13, Z13
	VPXORD Z14, Z14, Z14
	VPXORD Z15, Z15, Z15
	TRANSPOSE16
	VMOVUPS Z0, K3, 0(DI)
	VMOVUPS Z1, K3, 48(DI)
	VMOVUPS Z2, K3, 96(DI)
	VMOVUPS Z3, K3, 144(DI)
	VMOVUPS Z4, K3, 192(DI)
	VMOVUPS Z5, K3, 240(DI)
	VMOVUPS Z6, K3, 288(DI)
	VMOVUPS Z7, K3, 336(DI)
	VMOVUPS Z8, K3, 384(DI)
	VMOVUPS Z9, K3, 432(DI)
	VMOVUPS Z10, K3, 480(DI)
	VMOVUPS Z11, K3, 528(DI)
	VMOVUPS Z12, K3, 576(DI)
	VMOVUPS Z13, K3, 624(DI)
	VMOVUPS Z14, K3, 672(DI)
	VMOVUPS Z15, K3, 720(DI)
	ADDQ $64, AX
	ADDQ $64, BX
	ADDQ $64, R10
	ADDQ $768, DI
	DECQ CX
	JNZ prblk
prdone:
	VZEROUPPER
	RET

// ropeHalfAVX512(x *float32, heads, hd int, cos, sin *float32): rotate-half RoPE,
// lo' = lo·c − hi·s and hi' = hi·c + lo·s with lo, hi the two halves of each head;
// the last partial block of a half uses mask K1.
TEXT ·ropeHalfAVX512(SB), NOSPLIT, $0-40
	MOVQ x+0(FP), DI
	MOVQ heads+8(FP), R8
	MOVQ hd+16(FP), R9
	MOVQ cos+24(FP), R10
	MOVQ sin+32(FP), R11
	MOVQ R9, DX
	SHRQ $1, DX            // half
	LEAQ (DI)(DX*4), BX    // hi half of head 0
	SHLQ $2, R9            // head stride in bytes
	TESTQ R8, R8
	JEQ rhdone
rhhead:
	XORQ AX, AX
rhblk:
	MOVQ DX, CX
	SUBQ AX, CX
	JLE rhnext
	CMPQ CX, $16
	JGE rhfull
	TAILMASK
	JMP rhgo
rhfull:
	KXNORW K1, K1, K1
rhgo:
	VMOVUPS.Z (DI)(AX*4), K1, Z0
	VMOVUPS.Z (BX)(AX*4), K1, Z1
	VMOVUPS.Z (R10)(AX*4), K1, Z2
	VMOVUPS.Z (R11)(AX*4), K1, Z3
	VMULPS Z2, Z0, Z4
	VFNMADD231PS Z3, Z1, Z4
	VMULPS Z2, Z1, Z5
	VFMADD231PS Z3, Z0, Z5
	VMOVUPS Z4, K1, (DI)(AX*4)
	VMOVUPS Z5, K1, (BX)(AX*4)
	ADDQ $16, AX
	JMP rhblk
rhnext:
	ADDQ R9, DI
	ADDQ R9, BX
	DECQ R8
	JNZ rhhead
rhdone:
	VZEROUPPER
	RET

// ropeInterAVX512(x *float32, heads, hd int, cos, sin *float32): interleaved RoPE
// on pairs (2i, 2i+1): out = x·c ∓ swap(x)·s with c, s duplicated per pair, i.e.
// VFMADDSUB231PS (even lanes subtract, odd lanes add). hd/2 must be a multiple of 8.
DATA dup8<>+0(SB)/4, $0
DATA dup8<>+4(SB)/4, $0
DATA dup8<>+8(SB)/4, $1
DATA dup8<>+12(SB)/4, $1
DATA dup8<>+16(SB)/4, $2
DATA dup8<>+20(SB)/4, $2
DATA dup8<>+24(SB)/4, $3
DATA dup8<>+28(SB)/4, $3
DATA dup8<>+32(SB)/4, $4
DATA dup8<>+36(SB)/4, $4
DATA dup8<>+40(SB)/4, $5
DATA dup8<>+44(SB)/4, $5
DATA dup8<>+48(SB)/4, $6
DATA dup8<>+52(SB)/4, $6
DATA dup8<>+56(SB)/4, $7
DATA dup8<>+60(SB)/4, $7
GLOBL dup8<>(SB), RODATA|NOPTR, $64

TEXT ·ropeInterAVX512(SB), NOSPLIT, $0-40
	MOVQ x+0(FP), DI
	MOVQ heads+8(FP), R8
	MOVQ hd+16(FP), R9
	MOVQ cos+24(FP), R10
	MOVQ sin+32(FP), R11
	VMOVDQU32 dup8<>(SB), Z31
	MOVQ R9, DX
	SHRQ $1, DX            // pairs per head
	SHLQ $2, R9
	TESTQ R8, R8
	JEQ ridone
rihead:
	XORQ AX, AX            // pair index
	MOVQ DI, SI
riblk:
	CMPQ AX, DX
	JGE rinext
	VMOVUPS (SI), Z0
	VMOVUPS (R10)(AX*4), Y2
	VMOVUPS (R11)(AX*4), Y3
	VPERMPS Z2, Z31, Z2
	VPERMPS Z3, Z31, Z3
	VPERMILPS $0xb1, Z0, Z1
	VMULPS Z3, Z1, Z1
	VFMADDSUB213PS Z1, Z2, Z0
	VMOVUPS Z0, (SI)
	ADDQ $64, SI
	ADDQ $8, AX
	JMP riblk
rinext:
	ADDQ R9, DI
	DECQ R8
	JNZ rihead
ridone:
	VZEROUPPER
	RET

// readBWAVX512(p *byte, n int) uint64: streams n bytes (a positive multiple of
// 256) through four independent VPORD chains and returns the low quadword of
// their OR, so the loads cannot be dropped. It is the machine's read-bandwidth
// probe: no arithmetic bounds it, so it is what the decode products are held to.
TEXT ·readBWAVX512(SB), NOSPLIT, $0-24
	MOVQ p+0(FP), SI
	MOVQ n+8(FP), CX
	VPXORD Z0, Z0, Z0
	VPXORD Z1, Z1, Z1
	VPXORD Z2, Z2, Z2
	VPXORD Z3, Z3, Z3
	XORQ AX, AX
rbw:
	VPORD (SI)(AX*1), Z0, Z0
	VPORD 64(SI)(AX*1), Z1, Z1
	VPORD 128(SI)(AX*1), Z2, Z2
	VPORD 192(SI)(AX*1), Z3, Z3
	ADDQ $256, AX
	CMPQ AX, CX
	JLT rbw
	VPORD Z1, Z0, Z0
	VPORD Z3, Z2, Z2
	VPORD Z2, Z0, Z0
	VMOVQ X0, AX
	MOVQ AX, ret+16(FP)
	VZEROUPPER
	RET

// ---------------------------------------------------------------------------
// gemv4x4BF16SplitAVX512(k int, w *uint16, ldw int, x *float32, ldx int, out *float32)
// is gemv4x4BF16AVX512 for activations already split even/odd per 32-block
// (splitEvenOdd): one 64-byte load of a row's 32 bf16 weights gives the even
// elements as f32 after VPSLLD $16 and the odd ones after VPANDD, so a row
// costs two widening ops per 32 weights instead of four (VPMOVZXWD, VPSLLD
// per 16), and the 32 FMAs of a step, not the widening, take most of the two
// ports. Batched decode splits each activation row once per product and
// shares it over all weight rows. Activations in Z16–Z23, weight rows in
// Z24/Z25 and Z26/Z27 (so the next row widens while this one multiplies),
// sums in Z0–Z15; base-plus-displacement operands and pointer increments.
#define BF16S_ROW(R, T, U, c0, c1, c2, c3) \
	VMOVDQU32 (R), T; \
	VPSLLD $16, T, U; \
	VPANDD Z28, T, T; \
	VFMADD231PS Z16, U, c0; VFMADD231PS Z17, T, c0; \
	VFMADD231PS Z18, U, c1; VFMADD231PS Z19, T, c1; \
	VFMADD231PS Z20, U, c2; VFMADD231PS Z21, T, c2; \
	VFMADD231PS Z22, U, c3; VFMADD231PS Z23, T, c3

TEXT ·gemv4x4BF16SplitAVX512(SB), NOSPLIT, $0-48
	MOVQ k+0(FP), CX
	MOVQ w+8(FP), SI
	MOVQ ldw+16(FP), DX
	LEAQ (SI)(DX*2), R9
	LEAQ (R9)(DX*2), R10
	LEAQ (R10)(DX*2), R11
	MOVQ x+24(FP), DI
	MOVQ ldx+32(FP), R8
	LEAQ (DI)(R8*4), R12
	LEAQ (R12)(R8*4), R13
	LEAQ (R13)(R8*4), BX
	ZERO16
	MOVL $0xffff0000, AX
	VPBROADCASTD AX, Z28
g44s:
	VMOVUPS (DI), Z16
	VMOVUPS 64(DI), Z17
	VMOVUPS (R12), Z18
	VMOVUPS 64(R12), Z19
	VMOVUPS (R13), Z20
	VMOVUPS 64(R13), Z21
	VMOVUPS (BX), Z22
	VMOVUPS 64(BX), Z23
	BF16S_ROW(SI, Z24, Z25, Z0, Z1, Z2, Z3)
	BF16S_ROW(R9, Z26, Z27, Z4, Z5, Z6, Z7)
	BF16S_ROW(R10, Z24, Z25, Z8, Z9, Z10, Z11)
	BF16S_ROW(R11, Z26, Z27, Z12, Z13, Z14, Z15)
	ADDQ $64, SI; ADDQ $64, R9; ADDQ $64, R10; ADDQ $64, R11
	ADDQ $128, DI; ADDQ $128, R12; ADDQ $128, R13; ADDQ $128, BX
	SUBQ $32, CX
	JNZ g44s
	MOVQ out+40(FP), R8
	GEMV44_EPILOGUE

// ---------------------------------------------------------------------------
// splitEvenOddAVX512(dst, src []float32): splitEvenOdd for len(src) a multiple
// of 32 (dst at least as long): two VPERMT2PS per 32-block with the bf16split
// indices, the same split gemv4BF16AVX512 makes per call.
TEXT ·splitEvenOddAVX512(SB), NOSPLIT, $0-48
	MOVQ dst_base+0(FP), DI
	MOVQ src_base+24(FP), SI
	MOVQ src_len+32(FP), CX
	SHRQ $5, CX
	JEQ sedone
	VMOVDQU32 bf16split<>+0(SB), Z28
	VMOVDQU32 bf16split<>+64(SB), Z29
seloop:
	VMOVUPS (SI), Z0
	VMOVUPS (SI), Z1
	VPERMT2PS 64(SI), Z28, Z0
	VPERMT2PS 64(SI), Z29, Z1
	VMOVUPS Z0, (DI)
	VMOVUPS Z1, 64(DI)
	ADDQ $128, SI
	ADDQ $128, DI
	DECQ CX
	JNZ seloop
	VZEROUPPER
sedone:
	RET

// ---------------------------------------------------------------------------
// sgemm12x32RowsAVX512(kc int, a *float32, lda int, b *float32, ldb int, c *float32, ldc int, acc int)
// sgemm12x32AVX512 with A read in place: A's 12 rows are lda floats apart and
// row i's k-th value is a[i·lda+k], so the activations need no packing (the
// transposition into [kc][12] costs about as much as the FMAs of a narrow
// product). Rows 0–3 are addressed from AX, 4–7 from R11, 8–11 from R12, with
// R9 = lda and R10 = 3·lda in bytes; each step advances the three by 4 bytes.

#define ROWR(addr, bc, r0, r1) \
	VBROADCASTSS addr, bc; \
	VFMADD231PS Z24, bc, r0; \
	VFMADD231PS Z25, bc, r1

// ROWS12(off) is one step of the 12-row tile: ROWR for each of the 12 A rows
// at byte offset off (AX, R11, R12 and R9 = lda, R10 = 3·lda as above),
// alternating the two broadcast registers so consecutive rows overlap.
#define ROWS12(off) \
	ROWR(off(AX), Z26, Z0, Z1); \
	ROWR(off(AX)(R9*1), Z27, Z2, Z3); \
	ROWR(off(AX)(R9*2), Z26, Z4, Z5); \
	ROWR(off(AX)(R10*1), Z27, Z6, Z7); \
	ROWR(off(R11), Z26, Z8, Z9); \
	ROWR(off(R11)(R9*1), Z27, Z10, Z11); \
	ROWR(off(R11)(R9*2), Z26, Z12, Z13); \
	ROWR(off(R11)(R10*1), Z27, Z14, Z15); \
	ROWR(off(R12), Z26, Z16, Z17); \
	ROWR(off(R12)(R9*1), Z27, Z18, Z19); \
	ROWR(off(R12)(R9*2), Z26, Z20, Z21); \
	ROWR(off(R12)(R10*1), Z27, Z22, Z23)

TEXT ·sgemm12x32RowsAVX512(SB), NOSPLIT, $0-64
	MOVQ kc+0(FP), CX
	MOVQ a+8(FP), AX
	MOVQ lda+16(FP), R9
	SHLQ $2, R9
	LEAQ (R9)(R9*2), R10
	LEAQ (AX)(R9*4), R11
	LEAQ (R11)(R9*4), R12
	MOVQ b+24(FP), BX
	MOVQ ldb+32(FP), DX
	SHLQ $2, DX
	ZERO24
	TESTQ CX, CX
	JEQ rdone

rloop:
	VMOVUPS (BX), Z24
	VMOVUPS 64(BX), Z25
	PREFETCHT0 512(BX)
	ROWS12(0)
	ADDQ $4, AX
	ADDQ $4, R11
	ADDQ $4, R12
	ADDQ DX, BX
	DECQ CX
	JNZ rloop

rdone:
	STORE24

// ---------------------------------------------------------------------------
// sgemm12x32RowsPfAVX512(kc int, a *float32, lda int, b *float32, pf *float32, c *float32, ldc int, acc int)
// sgemm12x32RowsAVX512 for B packed [kc][32] (ldb = 32), unrolled by 16 steps
// (one cache line of each A row), and prefetching (PREFETCHT0) one line of
// each of the 12 rows at pf, lda apart, per 16 steps, at the offset the loop
// reads: matMulRows passes the next panel's rows, so that they stream in from
// memory while this panel computes instead of stalling the next panel's first
// tile. Rows 0–3 of pf are addressed from R13, 4–7 from R8, 8–11 from DI.
TEXT ·sgemm12x32RowsPfAVX512(SB), NOSPLIT, $0-64
	MOVQ kc+0(FP), CX
	MOVQ a+8(FP), AX
	MOVQ lda+16(FP), R9
	SHLQ $2, R9
	LEAQ (R9)(R9*2), R10
	LEAQ (AX)(R9*4), R11
	LEAQ (R11)(R9*4), R12
	MOVQ b+24(FP), BX
	MOVQ pf+32(FP), R13
	LEAQ (R13)(R9*4), R8
	LEAQ (R8)(R9*4), DI
	ZERO24
	CMPQ CX, $16
	JLT pftail
pfloop:
	PREFETCHT0 (R13)
	PREFETCHT0 (R13)(R9*1)
	PREFETCHT0 (R13)(R9*2)
	PREFETCHT0 (R13)(R10*1)
	PREFETCHT0 (R8)
	PREFETCHT0 (R8)(R9*1)
	PREFETCHT0 (R8)(R9*2)
	PREFETCHT0 (R8)(R10*1)
	PREFETCHT0 (DI)
	PREFETCHT0 (DI)(R9*1)
	PREFETCHT0 (DI)(R9*2)
	PREFETCHT0 (DI)(R10*1)
#include "rows16_body.h"
	ADDQ $64, AX
	ADDQ $64, R11
	ADDQ $64, R12
	ADDQ $64, R13
	ADDQ $64, R8
	ADDQ $64, DI
	ADDQ $2048, BX
	SUBQ $16, CX
	CMPQ CX, $16
	JGE pfloop
pftail:
	TESTQ CX, CX
	JEQ pfdone
pfstep:
	VMOVUPS (BX), Z24
	VMOVUPS 64(BX), Z25
	ROWS12(0)
	ADDQ $4, AX
	ADDQ $4, R11
	ADDQ $4, R12
	ADDQ $128, BX
	DECQ CX
	JNZ pfstep
pfdone:
	STORE24

// ---------------------------------------------------------------------------
// packPanel32BF16AVX512 and packPanel32F16AVX512(kc16 int, src *uint16, lds int,
// dst *float32): packPanel32AVX512 for 16-bit weights, widened as they are
// loaded (16 values per row and block), dst[t·32+r] = f32(src[r·lds+t]). packB
// widened each row into a 32 × kc f32 buffer first (57 KiB at kc = 448, more
// than L1d), which the transposition then read back.

TEXT ·packPanel32BF16AVX512(SB), NOSPLIT, $0-32
	MOVQ kc16+0(FP), CX
	MOVQ src+8(FP), SI
	MOVQ lds+16(FP), R8
	SHLQ $1, R8
	LEAQ (R8)(R8*2), R9
	MOVQ dst+24(FP), DX
	SHRQ $4, CX
	JEQ pbdone
	XORQ R12, R12
pbhalf:
	MOVQ SI, AX
	LEAQ (AX)(R8*4), BX
	LEAQ (BX)(R8*4), R10
	LEAQ (R10)(R8*4), R11
	MOVQ DX, DI
	MOVQ CX, R13
pbblk:
	VPMOVZXWD (AX), Z0
	VPSLLD $16, Z0, Z0
	VPMOVZXWD (AX)(R8*1), Z1
	VPSLLD $16, Z1, Z1
	VPMOVZXWD (AX)(R8*2), Z2
	VPSLLD $16, Z2, Z2
	VPMOVZXWD (AX)(R9*1), Z3
	VPSLLD $16, Z3, Z3
	VPMOVZXWD (BX), Z4
	VPSLLD $16, Z4, Z4
	VPMOVZXWD (BX)(R8*1), Z5
	VPSLLD $16, Z5, Z5
	VPMOVZXWD (BX)(R8*2), Z6
	VPSLLD $16, Z6, Z6
	VPMOVZXWD (BX)(R9*1), Z7
	VPSLLD $16, Z7, Z7
	VPMOVZXWD (R10), Z8
	VPSLLD $16, Z8, Z8
	VPMOVZXWD (R10)(R8*1), Z9
	VPSLLD $16, Z9, Z9
	VPMOVZXWD (R10)(R8*2), Z10
	VPSLLD $16, Z10, Z10
	VPMOVZXWD (R10)(R9*1), Z11
	VPSLLD $16, Z11, Z11
	VPMOVZXWD (R11), Z12
	VPSLLD $16, Z12, Z12
	VPMOVZXWD (R11)(R8*1), Z13
	VPSLLD $16, Z13, Z13
	VPMOVZXWD (R11)(R8*2), Z14
	VPSLLD $16, Z14, Z14
	VPMOVZXWD (R11)(R9*1), Z15
	VPSLLD $16, Z15, Z15
	TRANSPOSE16
	PANEL_STORE16
	ADDQ $32, AX
	ADDQ $32, BX
	ADDQ $32, R10
	ADDQ $32, R11
	ADDQ $2048, DI
	DECQ R13
	JNZ pbblk
	INCQ R12
	CMPQ R12, $2
	JEQ pbdone
	LEAQ (R11)(R8*4), SI // row 16 of this column block...
	SHLQ $5, CX          // ...minus the columns walked: rows advance 16·lds
	SUBQ CX, SI
	SHRQ $5, CX
	ADDQ $64, DX
	JMP pbhalf
pbdone:
	VZEROUPPER
	RET

TEXT ·packPanel32F16AVX512(SB), NOSPLIT, $0-32
	MOVQ kc16+0(FP), CX
	MOVQ src+8(FP), SI
	MOVQ lds+16(FP), R8
	SHLQ $1, R8
	LEAQ (R8)(R8*2), R9
	MOVQ dst+24(FP), DX
	SHRQ $4, CX
	JEQ phdone
	XORQ R12, R12
phhalf:
	MOVQ SI, AX
	LEAQ (AX)(R8*4), BX
	LEAQ (BX)(R8*4), R10
	LEAQ (R10)(R8*4), R11
	MOVQ DX, DI
	MOVQ CX, R13
phblk:
	PANEL_LOAD16(VCVTPH2PS)
	TRANSPOSE16
	PANEL_STORE16
	ADDQ $32, AX
	ADDQ $32, BX
	ADDQ $32, R10
	ADDQ $32, R11
	ADDQ $2048, DI
	DECQ R13
	JNZ phblk
	INCQ R12
	CMPQ R12, $2
	JEQ phdone
	LEAQ (R11)(R8*4), SI // row 16 of this column block...
	SHLQ $5, CX          // ...minus the columns walked: rows advance 16·lds
	SUBQ CX, SI
	SHRQ $5, CX
	ADDQ $64, DX
	JMP phhalf
phdone:
	VZEROUPPER
	RET

// colMax16AVX512(p *float32, ld, n int, dst *float32): dst[c] = max(dst[c],
// p[j·ld+c]) over rows j < n, c < 16 — one 16-column strip of a row-major
// block, four rows at a time in four chains so that the maxima do not wait on
// each other.
TEXT ·colMax16AVX512(SB), NOSPLIT, $0-32
	MOVQ p+0(FP), SI
	MOVQ ld+8(FP), BX
	SHLQ $2, BX
	MOVQ n+16(FP), CX
	MOVQ dst+24(FP), DI
	VMOVUPS (DI), Z0
	VMOVAPS Z0, Z1
	VMOVAPS Z0, Z2
	VMOVAPS Z0, Z3
cm4:
	CMPQ CX, $4
	JLT cm1
	LEAQ (SI)(BX*2), DX
	VMAXPS (SI), Z0, Z0
	VMAXPS (SI)(BX*1), Z1, Z1
	VMAXPS (DX), Z2, Z2
	VMAXPS (DX)(BX*1), Z3, Z3
	LEAQ (DX)(BX*2), SI
	SUBQ $4, CX
	JMP cm4
cm1:
	TESTQ CX, CX
	JEQ cmdone
	VMAXPS (SI), Z0, Z0
	ADDQ BX, SI
	DECQ CX
	JMP cm1
cmdone:
	VMAXPS Z1, Z0, Z0
	VMAXPS Z3, Z2, Z2
	VMAXPS Z2, Z0, Z0
	VMOVUPS Z0, (DI)
	VZEROUPPER
	RET

// expRows16AVX512(p *float32, ld, n int, m, acc *float32): p[j·ld+c] =
// exp(p[j·ld+c] − m[c]) and acc[c] += the sum of them over rows j < n, c < 16
// (one 16-column strip; two rows per step, each with its own sum).
TEXT ·expRows16AVX512(SB), NOSPLIT, $0-40
	MOVQ p+0(FP), SI
	MOVQ ld+8(FP), BX
	SHLQ $2, BX
	MOVQ n+16(FP), CX
	MOVQ m+24(FP), DX
	MOVQ acc+32(FP), DI
	EXPCONST
	VMOVUPS (DX), Z17
	VMOVUPS (DI), Z16
	VPXORD Z15, Z15, Z15
er2:
	CMPQ CX, $2
	JLT er1
	VMOVUPS (SI), Z0
	VMOVUPS (SI)(BX*1), Z4
	VSUBPS Z17, Z0, Z0
	VSUBPS Z17, Z4, Z4
	EXP(Z0, Z2, Z3)
	EXP(Z4, Z5, Z6)
	VMOVUPS Z0, (SI)
	VMOVUPS Z4, (SI)(BX*1)
	VADDPS Z0, Z16, Z16
	VADDPS Z4, Z15, Z15
	LEAQ (SI)(BX*2), SI
	SUBQ $2, CX
	JMP er2
er1:
	TESTQ CX, CX
	JEQ erdone
	VMOVUPS (SI), Z0
	VSUBPS Z17, Z0, Z0
	EXP(Z0, Z2, Z3)
	VMOVUPS Z0, (SI)
	VADDPS Z0, Z16, Z16
erdone:
	VADDPS Z15, Z16, Z16
	VMOVUPS Z16, (DI)
	VZEROUPPER
	RET

// ---------------------------------------------------------------------------
// sgemm4x32AVX512 and sgemm4x32RowsAVX512 have the signatures of the 12×32
// kernels for a 4×32 tile: decode attention has one query row per head, 1–7
// heads per KV head, and the 12-row tile would spend most of its FMAs on rows
// of zeros. Eight accumulators keep the two FMA ports busy (latency 4).
// Both prefetch B eight rows ahead: decode reads keys and values once per
// token from far caches, with B rows 384 (keys) or KVHeads·HeadDim·4 (values)
// bytes apart, a stride the hardware prefetcher follows late.

TEXT ·sgemm4x32AVX512(SB), NOSPLIT, $0-64
	MOVQ kc+0(FP), CX
	MOVQ a+8(FP), AX
	MOVQ lda+16(FP), R9
	SHLQ $2, R9
	MOVQ b+24(FP), BX
	MOVQ ldb+32(FP), DX
	SHLQ $2, DX
	ZERO8
	TESTQ CX, CX
	JEQ done

loop:
	VMOVUPS (BX), Z24
	VMOVUPS 64(BX), Z25
	PREFETCHT0 (BX)(DX*8)
	PREFETCHT0 64(BX)(DX*8)
	ROW(0, Z26, Z0, Z1)
	ROW(4, Z27, Z2, Z3)
	ROW(8, Z28, Z4, Z5)
	ROW(12, Z29, Z6, Z7)
	ADDQ R9, AX
	ADDQ DX, BX
	DECQ CX
	JNZ loop

done:
	STORE8

TEXT ·sgemm4x32RowsAVX512(SB), NOSPLIT, $0-64
	MOVQ kc+0(FP), CX
	MOVQ a+8(FP), AX
	MOVQ lda+16(FP), R9
	SHLQ $2, R9
	LEAQ (R9)(R9*2), R10
	MOVQ b+24(FP), BX
	MOVQ ldb+32(FP), DX
	SHLQ $2, DX
	ZERO8
	TESTQ CX, CX
	JEQ done

loop:
	VMOVUPS (BX), Z24
	VMOVUPS 64(BX), Z25
	PREFETCHT0 (BX)(DX*8)
	PREFETCHT0 64(BX)(DX*8)
	ROWR((AX), Z26, Z0, Z1)
	ROWR((AX)(R9*1), Z27, Z2, Z3)
	ROWR((AX)(R9*2), Z28, Z4, Z5)
	ROWR((AX)(R10*1), Z29, Z6, Z7)
	ADDQ $4, AX
	ADDQ DX, BX
	DECQ CX
	JNZ loop

done:
	STORE8

// ---------------------------------------------------------------------------
// sgemm12x32RowsPfBAVX512(kc int, a *float32, lda int, b *float32, pf *float32, pb unsafe.Pointer, c *float32, ldc int, acc int)
// sgemm12x32RowsPfAVX512 that also prefetches four lines at pb into L2
// (PREFETCHT1) per 16 steps, pb advancing 256 bytes each time: 16·kc bytes
// of the weight block the product uses next (matMulPackedWith, blockAhead),
// fetched a few lines at a time while this tile computes, so that the
// block's first activation panel finds it in L2 instead of waiting on
// memory, without a burst of misses that would hold up this tile's own
// loads.

TEXT ·sgemm12x32RowsPfBAVX512(SB), NOSPLIT, $0-72
	MOVQ kc+0(FP), CX
	MOVQ a+8(FP), AX
	MOVQ lda+16(FP), R9
	SHLQ $2, R9
	LEAQ (R9)(R9*2), R10
	LEAQ (AX)(R9*4), R11
	LEAQ (R11)(R9*4), R12
	MOVQ b+24(FP), BX
	MOVQ pf+32(FP), R13
	MOVQ pb+40(FP), SI
	LEAQ (R13)(R9*4), R8
	LEAQ (R8)(R9*4), DI
	ZERO24
	CMPQ CX, $16
	JLT pbtail
pbloop:
	PREFETCHT1 (SI)
	PREFETCHT1 64(SI)
	PREFETCHT1 128(SI)
	PREFETCHT1 192(SI)
	PREFETCHT0 (R13)
	PREFETCHT0 (R13)(R9*1)
	PREFETCHT0 (R13)(R9*2)
	PREFETCHT0 (R13)(R10*1)
	PREFETCHT0 (R8)
	PREFETCHT0 (R8)(R9*1)
	PREFETCHT0 (R8)(R9*2)
	PREFETCHT0 (R8)(R10*1)
	PREFETCHT0 (DI)
	PREFETCHT0 (DI)(R9*1)
	PREFETCHT0 (DI)(R9*2)
	PREFETCHT0 (DI)(R10*1)
#include "rows16_body.h"
	ADDQ $64, AX
	ADDQ $64, R11
	ADDQ $64, R12
	ADDQ $64, R13
	ADDQ $64, R8
	ADDQ $64, DI
	ADDQ $2048, BX
	ADDQ $256, SI
	SUBQ $16, CX
	CMPQ CX, $16
	JGE pbloop
pbtail:
	TESTQ CX, CX
	JEQ pbdone
pbstep:
	VMOVUPS (BX), Z24
	VMOVUPS 64(BX), Z25
	ROWS12(0)
	ADDQ $4, AX
	ADDQ $4, R11
	ADDQ $4, R12
	ADDQ $128, BX
	DECQ CX
	JNZ pbstep
pbdone:
	STORE24B
