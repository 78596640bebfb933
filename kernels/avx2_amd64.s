//go:build !purego

#include "textflag.h"

// AVX2+FMA kernels for CPUs without AVX-512 (16 vector registers).

#define ROW2(off, bc, r0, r1) \
	VBROADCASTSS off(AX), bc; \
	VFMADD231PS Y12, bc, r0; \
	VFMADD231PS Y13, bc, r1

#define ACCST2(r0, r1) \
	VADDPS (DI), r0, r0; \
	VADDPS 32(DI), r1, r1; \
	VMOVUPS r0, (DI); \
	VMOVUPS r1, 32(DI); \
	ADDQ SI, DI

#define ST2(r0, r1) \
	VMOVUPS r0, (DI); \
	VMOVUPS r1, 32(DI); \
	ADDQ SI, DI

// HSUM8 reduces ymm yr (xr its low half) into the float at dst.
#define HSUM8(yr, xr, dst) \
	VEXTRACTF128 $1, yr, X14; \
	VADDPS X14, xr, xr; \
	VHADDPS xr, xr, xr; \
	VHADDPS xr, xr, xr; \
	MOVSS xr, dst

#define GEMV2_PROLOGUE \
	MOVQ k+0(FP), CX; \
	MOVQ w+8(FP), SI; \
	MOVQ ldw+16(FP), DX; \
	MOVQ x+24(FP), DI; \
	MOVQ out+32(FP), R8; \
	LEAQ (SI)(DX*SHIFT), R9; \
	LEAQ (R9)(DX*SHIFT), R10; \
	LEAQ (R10)(DX*SHIFT), R11; \
	VXORPS Y0, Y0, Y0; VXORPS Y1, Y1, Y1; VXORPS Y2, Y2, Y2; VXORPS Y3, Y3, Y3; \
	VXORPS Y4, Y4, Y4; VXORPS Y5, Y5, Y5; VXORPS Y6, Y6, Y6; VXORPS Y7, Y7, Y7; \
	XORQ AX, AX

#define GEMV2_EPILOGUE \
	VADDPS Y1, Y0, Y0; \
	VADDPS Y3, Y2, Y2; \
	VADDPS Y5, Y4, Y4; \
	VADDPS Y7, Y6, Y6; \
	HSUM8(Y0, X0, (R8)); \
	HSUM8(Y2, X2, 4(R8)); \
	HSUM8(Y4, X4, 8(R8)); \
	HSUM8(Y6, X6, 12(R8)); \
	VZEROUPPER; \
	RET

DATA exp2c<>+0(SB)/4, $0x3fb8aa3b
DATA exp2c<>+4(SB)/4, $0x3fb8aa3b
DATA exp2c<>+8(SB)/4, $0x3fb8aa3b
DATA exp2c<>+12(SB)/4, $0x3fb8aa3b
DATA exp2c<>+16(SB)/4, $0x3fb8aa3b
DATA exp2c<>+20(SB)/4, $0x3fb8aa3b
DATA exp2c<>+24(SB)/4, $0x3fb8aa3b
DATA exp2c<>+28(SB)/4, $0x3fb8aa3b
DATA exp2c<>+32(SB)/4, $0x3f318000
DATA exp2c<>+36(SB)/4, $0x3f318000
DATA exp2c<>+40(SB)/4, $0x3f318000
DATA exp2c<>+44(SB)/4, $0x3f318000
DATA exp2c<>+48(SB)/4, $0x3f318000
DATA exp2c<>+52(SB)/4, $0x3f318000
DATA exp2c<>+56(SB)/4, $0x3f318000
DATA exp2c<>+60(SB)/4, $0x3f318000
DATA exp2c<>+64(SB)/4, $0xb95e8083
DATA exp2c<>+68(SB)/4, $0xb95e8083
DATA exp2c<>+72(SB)/4, $0xb95e8083
DATA exp2c<>+76(SB)/4, $0xb95e8083
DATA exp2c<>+80(SB)/4, $0xb95e8083
DATA exp2c<>+84(SB)/4, $0xb95e8083
DATA exp2c<>+88(SB)/4, $0xb95e8083
DATA exp2c<>+92(SB)/4, $0xb95e8083
DATA exp2c<>+96(SB)/4, $0x39506967
DATA exp2c<>+100(SB)/4, $0x39506967
DATA exp2c<>+104(SB)/4, $0x39506967
DATA exp2c<>+108(SB)/4, $0x39506967
DATA exp2c<>+112(SB)/4, $0x39506967
DATA exp2c<>+116(SB)/4, $0x39506967
DATA exp2c<>+120(SB)/4, $0x39506967
DATA exp2c<>+124(SB)/4, $0x39506967
DATA exp2c<>+128(SB)/4, $0x3ab743ce
DATA exp2c<>+132(SB)/4, $0x3ab743ce
DATA exp2c<>+136(SB)/4, $0x3ab743ce
DATA exp2c<>+140(SB)/4, $0x3ab743ce
DATA exp2c<>+144(SB)/4, $0x3ab743ce
DATA exp2c<>+148(SB)/4, $0x3ab743ce
DATA exp2c<>+152(SB)/4, $0x3ab743ce
DATA exp2c<>+156(SB)/4, $0x3ab743ce
DATA exp2c<>+160(SB)/4, $0x3c088908
DATA exp2c<>+164(SB)/4, $0x3c088908
DATA exp2c<>+168(SB)/4, $0x3c088908
DATA exp2c<>+172(SB)/4, $0x3c088908
DATA exp2c<>+176(SB)/4, $0x3c088908
DATA exp2c<>+180(SB)/4, $0x3c088908
DATA exp2c<>+184(SB)/4, $0x3c088908
DATA exp2c<>+188(SB)/4, $0x3c088908
DATA exp2c<>+192(SB)/4, $0x3d2aa9c1
DATA exp2c<>+196(SB)/4, $0x3d2aa9c1
DATA exp2c<>+200(SB)/4, $0x3d2aa9c1
DATA exp2c<>+204(SB)/4, $0x3d2aa9c1
DATA exp2c<>+208(SB)/4, $0x3d2aa9c1
DATA exp2c<>+212(SB)/4, $0x3d2aa9c1
DATA exp2c<>+216(SB)/4, $0x3d2aa9c1
DATA exp2c<>+220(SB)/4, $0x3d2aa9c1
DATA exp2c<>+224(SB)/4, $0x3e2aaaaa
DATA exp2c<>+228(SB)/4, $0x3e2aaaaa
DATA exp2c<>+232(SB)/4, $0x3e2aaaaa
DATA exp2c<>+236(SB)/4, $0x3e2aaaaa
DATA exp2c<>+240(SB)/4, $0x3e2aaaaa
DATA exp2c<>+244(SB)/4, $0x3e2aaaaa
DATA exp2c<>+248(SB)/4, $0x3e2aaaaa
DATA exp2c<>+252(SB)/4, $0x3e2aaaaa
DATA exp2c<>+256(SB)/4, $0x3f000000
DATA exp2c<>+260(SB)/4, $0x3f000000
DATA exp2c<>+264(SB)/4, $0x3f000000
DATA exp2c<>+268(SB)/4, $0x3f000000
DATA exp2c<>+272(SB)/4, $0x3f000000
DATA exp2c<>+276(SB)/4, $0x3f000000
DATA exp2c<>+280(SB)/4, $0x3f000000
DATA exp2c<>+284(SB)/4, $0x3f000000
DATA exp2c<>+288(SB)/4, $0x3f800000
DATA exp2c<>+292(SB)/4, $0x3f800000
DATA exp2c<>+296(SB)/4, $0x3f800000
DATA exp2c<>+300(SB)/4, $0x3f800000
DATA exp2c<>+304(SB)/4, $0x3f800000
DATA exp2c<>+308(SB)/4, $0x3f800000
DATA exp2c<>+312(SB)/4, $0x3f800000
DATA exp2c<>+316(SB)/4, $0x3f800000
DATA exp2c<>+320(SB)/4, $0xc2aeac4f
DATA exp2c<>+324(SB)/4, $0xc2aeac4f
DATA exp2c<>+328(SB)/4, $0xc2aeac4f
DATA exp2c<>+332(SB)/4, $0xc2aeac4f
DATA exp2c<>+336(SB)/4, $0xc2aeac4f
DATA exp2c<>+340(SB)/4, $0xc2aeac4f
DATA exp2c<>+344(SB)/4, $0xc2aeac4f
DATA exp2c<>+348(SB)/4, $0xc2aeac4f
DATA exp2c<>+352(SB)/4, $0x42b0999a
DATA exp2c<>+356(SB)/4, $0x42b0999a
DATA exp2c<>+360(SB)/4, $0x42b0999a
DATA exp2c<>+364(SB)/4, $0x42b0999a
DATA exp2c<>+368(SB)/4, $0x42b0999a
DATA exp2c<>+372(SB)/4, $0x42b0999a
DATA exp2c<>+376(SB)/4, $0x42b0999a
DATA exp2c<>+380(SB)/4, $0x42b0999a
DATA exp2c<>+384(SB)/4, $0x0000007f
DATA exp2c<>+388(SB)/4, $0x0000007f
DATA exp2c<>+392(SB)/4, $0x0000007f
DATA exp2c<>+396(SB)/4, $0x0000007f
DATA exp2c<>+400(SB)/4, $0x0000007f
DATA exp2c<>+404(SB)/4, $0x0000007f
DATA exp2c<>+408(SB)/4, $0x0000007f
DATA exp2c<>+412(SB)/4, $0x0000007f
GLOBL exp2c<>(SB), RODATA|NOPTR, $416

// EXP8 replaces Y0 by exp(Y0) (Cephes expf scheme; 2^n built in the exponent
// field). Arguments below −87.3 give exactly 0, so exp(−Inf) = 0. Uses Y1–Y4.
#define EXP8 \
	VCMPPS $1, exp2c<>+320(SB), Y0, Y3; \
	VMINPS exp2c<>+352(SB), Y0, Y0; \
	VMAXPS exp2c<>+320(SB), Y0, Y0; \
	VMULPS exp2c<>+0(SB), Y0, Y2; \
	VROUNDPS $0, Y2, Y2; \
	VFNMADD231PS exp2c<>+32(SB), Y2, Y0; \
	VFNMADD231PS exp2c<>+64(SB), Y2, Y0; \
	VMOVUPS exp2c<>+96(SB), Y1; \
	VFMADD213PS exp2c<>+128(SB), Y0, Y1; \
	VFMADD213PS exp2c<>+160(SB), Y0, Y1; \
	VFMADD213PS exp2c<>+192(SB), Y0, Y1; \
	VFMADD213PS exp2c<>+224(SB), Y0, Y1; \
	VFMADD213PS exp2c<>+256(SB), Y0, Y1; \
	VMULPS Y0, Y0, Y4; \
	VFMADD213PS Y0, Y4, Y1; \
	VADDPS exp2c<>+288(SB), Y1, Y1; \
	VCVTPS2DQ Y2, Y2; \
	VPADDD exp2c<>+384(SB), Y2, Y2; \
	VPSLLD $23, Y2, Y2; \
	VMULPS Y2, Y1, Y0; \
	VANDNPS Y0, Y3, Y0

// sgemm6x16AVX2(kc int, a *float32, lda int, b *float32, ldb int, c *float32, ldc int, acc int)
// C[6][16] (+)= Σ_p A[p][0:6]ᵀ · B[p][0:16]; accumulators Y0–Y11, B in Y12/Y13.
TEXT ·sgemm6x16AVX2(SB), NOSPLIT, $0-64
	MOVQ kc+0(FP), CX
	MOVQ a+8(FP), AX
	MOVQ lda+16(FP), R9
	SHLQ $2, R9
	MOVQ b+24(FP), BX
	MOVQ ldb+32(FP), DX
	SHLQ $2, DX
	VXORPS Y0, Y0, Y0; VXORPS Y1, Y1, Y1; VXORPS Y2, Y2, Y2; VXORPS Y3, Y3, Y3
	VXORPS Y4, Y4, Y4; VXORPS Y5, Y5, Y5; VXORPS Y6, Y6, Y6; VXORPS Y7, Y7, Y7
	VXORPS Y8, Y8, Y8; VXORPS Y9, Y9, Y9; VXORPS Y10, Y10, Y10; VXORPS Y11, Y11, Y11
	TESTQ CX, CX
	JEQ done
loop:
	VMOVUPS (BX), Y12
	VMOVUPS 32(BX), Y13
	ROW2(0, Y14, Y0, Y1)
	ROW2(4, Y15, Y2, Y3)
	ROW2(8, Y14, Y4, Y5)
	ROW2(12, Y15, Y6, Y7)
	ROW2(16, Y14, Y8, Y9)
	ROW2(20, Y15, Y10, Y11)
	ADDQ R9, AX
	ADDQ DX, BX
	DECQ CX
	JNZ loop
done:
	MOVQ c+40(FP), DI
	MOVQ ldc+48(FP), SI
	SHLQ $2, SI
	MOVQ acc+56(FP), R8
	TESTQ R8, R8
	JEQ nacc
	ACCST2(Y0, Y1); ACCST2(Y2, Y3); ACCST2(Y4, Y5)
	ACCST2(Y6, Y7); ACCST2(Y8, Y9); ACCST2(Y10, Y11)
	VZEROUPPER
	RET
nacc:
	ST2(Y0, Y1); ST2(Y2, Y3); ST2(Y4, Y5)
	ST2(Y6, Y7); ST2(Y8, Y9); ST2(Y10, Y11)
	VZEROUPPER
	RET

// gemv4*AVX2: four weight rows against one vector, 16 elements per step; k is a
// positive multiple of 32.
#define SHIFT 4
TEXT ·gemv4F32AVX2(SB), NOSPLIT, $0-40
	GEMV2_PROLOGUE
gf32:
	VMOVUPS (DI)(AX*4), Y8
	VMOVUPS 32(DI)(AX*4), Y9
	VFMADD231PS (SI)(AX*4), Y8, Y0
	VFMADD231PS 32(SI)(AX*4), Y9, Y1
	VFMADD231PS (R9)(AX*4), Y8, Y2
	VFMADD231PS 32(R9)(AX*4), Y9, Y3
	VFMADD231PS (R10)(AX*4), Y8, Y4
	VFMADD231PS 32(R10)(AX*4), Y9, Y5
	VFMADD231PS (R11)(AX*4), Y8, Y6
	VFMADD231PS 32(R11)(AX*4), Y9, Y7
	ADDQ $16, AX
	CMPQ AX, CX
	JLT gf32
	GEMV2_EPILOGUE
#undef SHIFT

#define SHIFT 2
#define GEMV2_16(LOAD) \
	VMOVUPS (DI)(AX*4), Y8; \
	VMOVUPS 32(DI)(AX*4), Y9; \
	LOAD((SI)(AX*2), Y10); LOAD(16(SI)(AX*2), Y11); \
	VFMADD231PS Y10, Y8, Y0; VFMADD231PS Y11, Y9, Y1; \
	LOAD((R9)(AX*2), Y12); LOAD(16(R9)(AX*2), Y13); \
	VFMADD231PS Y12, Y8, Y2; VFMADD231PS Y13, Y9, Y3; \
	LOAD((R10)(AX*2), Y10); LOAD(16(R10)(AX*2), Y11); \
	VFMADD231PS Y10, Y8, Y4; VFMADD231PS Y11, Y9, Y5; \
	LOAD((R11)(AX*2), Y12); LOAD(16(R11)(AX*2), Y13); \
	VFMADD231PS Y12, Y8, Y6; VFMADD231PS Y13, Y9, Y7

#define LDF16(m, y) VCVTPH2PS m, y
#define LDBF16(m, y) VPMOVZXWD m, y; VPSLLD $16, y, y

TEXT ·gemv4F16AVX2(SB), NOSPLIT, $0-40
	GEMV2_PROLOGUE
gf16:
	GEMV2_16(LDF16)
	ADDQ $16, AX
	CMPQ AX, CX
	JLT gf16
	GEMV2_EPILOGUE

TEXT ·gemv4BF16AVX2(SB), NOSPLIT, $0-40
	GEMV2_PROLOGUE
gbf16:
	GEMV2_16(LDBF16)
	ADDQ $16, AX
	CMPQ AX, CX
	JLT gbf16
	GEMV2_EPILOGUE
#undef SHIFT

// dotAVX2(a, b []float32) float32: whole blocks of 32; the caller adds the tail.
TEXT ·dotAVX2(SB), NOSPLIT, $0-52
	MOVQ a_base+0(FP), SI
	MOVQ a_len+8(FP), CX
	MOVQ b_base+24(FP), DI
	VXORPS Y0, Y0, Y0
	VXORPS Y1, Y1, Y1
	VXORPS Y2, Y2, Y2
	VXORPS Y3, Y3, Y3
	SHRQ $5, CX
	JEQ dsum
d32:
	VMOVUPS (SI), Y4
	VMOVUPS 32(SI), Y5
	VMOVUPS 64(SI), Y6
	VMOVUPS 96(SI), Y7
	VFMADD231PS (DI), Y4, Y0
	VFMADD231PS 32(DI), Y5, Y1
	VFMADD231PS 64(DI), Y6, Y2
	VFMADD231PS 96(DI), Y7, Y3
	ADDQ $128, SI
	ADDQ $128, DI
	DECQ CX
	JNZ d32
dsum:
	VADDPS Y1, Y0, Y0
	VADDPS Y3, Y2, Y2
	VADDPS Y2, Y0, Y0
	HSUM8(Y0, X0, ret+48(FP))
	VZEROUPPER
	RET

// Element-wise AVX2 kernels work on whole blocks of 8; Go wrappers do the tails.

// axpyAVX2(a float32, x, y []float32): y += a·x
TEXT ·axpyAVX2(SB), NOSPLIT, $0-56
	VBROADCASTSS a+0(FP), Y5
	MOVQ x_base+8(FP), SI
	MOVQ x_len+16(FP), CX
	MOVQ y_base+32(FP), DI
	SHRQ $3, CX
	JEQ axdone
ax8:
	VMOVUPS (DI), Y1
	VFMADD231PS (SI), Y5, Y1
	VMOVUPS Y1, (DI)
	ADDQ $32, SI
	ADDQ $32, DI
	DECQ CX
	JNZ ax8
axdone:
	VZEROUPPER
	RET

// addAVX2(dst, x []float32): dst += x
TEXT ·addAVX2(SB), NOSPLIT, $0-48
	MOVQ dst_base+0(FP), DI
	MOVQ dst_len+8(FP), CX
	MOVQ x_base+24(FP), SI
	SHRQ $3, CX
	JEQ addone
ad8:
	VMOVUPS (DI), Y1
	VADDPS (SI), Y1, Y1
	VMOVUPS Y1, (DI)
	ADDQ $32, SI
	ADDQ $32, DI
	DECQ CX
	JNZ ad8
addone:
	VZEROUPPER
	RET

// scaleMulAVX2(dst, x, w []float32, s float32): dst = x·s·w
TEXT ·scaleMulAVX2(SB), NOSPLIT, $0-76
	MOVQ dst_base+0(FP), DI
	MOVQ x_base+24(FP), SI
	MOVQ x_len+32(FP), CX
	MOVQ w_base+48(FP), DX
	VBROADCASTSS s+72(FP), Y5
	SHRQ $3, CX
	JEQ smdone
sm8:
	VMULPS (SI), Y5, Y1
	VMULPS (DX), Y1, Y1
	VMOVUPS Y1, (DI)
	ADDQ $32, SI
	ADDQ $32, DI
	ADDQ $32, DX
	DECQ CX
	JNZ sm8
smdone:
	VZEROUPPER
	RET

// scaleAVX2(x []float32, s float32): x *= s
TEXT ·scaleAVX2(SB), NOSPLIT, $0-28
	MOVQ x_base+0(FP), DI
	MOVQ x_len+8(FP), CX
	VBROADCASTSS s+24(FP), Y5
	SHRQ $3, CX
	JEQ scdone
sc8:
	VMULPS (DI), Y5, Y1
	VMOVUPS Y1, (DI)
	ADDQ $32, DI
	DECQ CX
	JNZ sc8
scdone:
	VZEROUPPER
	RET

// vmaxAVX2(dst, x []float32): dst = max(dst, x)
TEXT ·vmaxAVX2(SB), NOSPLIT, $0-48
	MOVQ dst_base+0(FP), DI
	MOVQ dst_len+8(FP), CX
	MOVQ x_base+24(FP), SI
	SHRQ $3, CX
	JEQ vmdone
vm8:
	VMOVUPS (DI), Y1
	VMAXPS (SI), Y1, Y1
	VMOVUPS Y1, (DI)
	ADDQ $32, SI
	ADDQ $32, DI
	DECQ CX
	JNZ vm8
vmdone:
	VZEROUPPER
	RET

// siluMulAVX2(gate, up []float32): gate = gate/(1+exp(−gate))·up
TEXT ·siluMulAVX2(SB), NOSPLIT, $0-48
	MOVQ gate_base+0(FP), DI
	MOVQ gate_len+8(FP), CX
	MOVQ up_base+24(FP), SI
	VXORPS Y6, Y6, Y6
	SHRQ $3, CX
	JEQ sidone
si8:
	VMOVUPS (DI), Y7
	VSUBPS Y7, Y6, Y0
	EXP8
	VADDPS exp2c<>+288(SB), Y0, Y0
	VDIVPS Y0, Y7, Y7
	VMULPS (SI), Y7, Y7
	VMOVUPS Y7, (DI)
	ADDQ $32, SI
	ADDQ $32, DI
	DECQ CX
	JNZ si8
sidone:
	VZEROUPPER
	RET

// expSubAVX2(x []float32, m float32) float32: x = exp(x−m), returns Σx
TEXT ·expSubAVX2(SB), NOSPLIT, $0-36
	MOVQ x_base+0(FP), DI
	MOVQ x_len+8(FP), CX
	VBROADCASTSS m+24(FP), Y5
	VXORPS Y6, Y6, Y6
	SHRQ $3, CX
	JEQ esdone
es8:
	VMOVUPS (DI), Y0
	VSUBPS Y5, Y0, Y0
	EXP8
	VMOVUPS Y0, (DI)
	VADDPS Y0, Y6, Y6
	ADDQ $32, DI
	DECQ CX
	JNZ es8
esdone:
	HSUM8(Y6, X6, ret+32(FP))
	VZEROUPPER
	RET

// expSubVAVX2(x, m, acc []float32): x = exp(x − m); acc += x
TEXT ·expSubVAVX2(SB), NOSPLIT, $0-72
	MOVQ x_base+0(FP), DI
	MOVQ x_len+8(FP), CX
	MOVQ m_base+24(FP), SI
	MOVQ acc_base+48(FP), DX
	SHRQ $3, CX
	JEQ evdone
ev8:
	VMOVUPS (DI), Y0
	VSUBPS (SI), Y0, Y0
	EXP8
	VMOVUPS Y0, (DI)
	VADDPS (DX), Y0, Y1
	VMOVUPS Y1, (DX)
	ADDQ $32, SI
	ADDQ $32, DI
	ADDQ $32, DX
	DECQ CX
	JNZ ev8
evdone:
	VZEROUPPER
	RET

// bf16F32AVX2(dst []float32, src []uint16)
TEXT ·bf16F32AVX2(SB), NOSPLIT, $0-48
	MOVQ dst_base+0(FP), DI
	MOVQ src_base+24(FP), SI
	MOVQ src_len+32(FP), CX
	SHRQ $3, CX
	JEQ bcdone
bc8:
	VPMOVZXWD (SI), Y0
	VPSLLD $16, Y0, Y0
	VMOVUPS Y0, (DI)
	ADDQ $16, SI
	ADDQ $32, DI
	DECQ CX
	JNZ bc8
bcdone:
	VZEROUPPER
	RET

// f16F32AVX2(dst []float32, src []uint16)
TEXT ·f16F32AVX2(SB), NOSPLIT, $0-48
	MOVQ dst_base+0(FP), DI
	MOVQ src_base+24(FP), SI
	MOVQ src_len+32(FP), CX
	SHRQ $3, CX
	JEQ hcdone
hc8:
	VCVTPH2PS (SI), Y0
	VMOVUPS Y0, (DI)
	ADDQ $16, SI
	ADDQ $32, DI
	DECQ CX
	JNZ hc8
hcdone:
	VZEROUPPER
	RET

// f32F16AVX2(dst []uint16, src []float32)
TEXT ·f32F16AVX2(SB), NOSPLIT, $0-48
	MOVQ dst_base+0(FP), DI
	MOVQ src_base+24(FP), SI
	MOVQ src_len+32(FP), CX
	SHRQ $3, CX
	JEQ fhdone
fh8:
	VMOVUPS (SI), Y0
	VCVTPS2PH $0, Y0, X1
	VMOVDQU X1, (DI)
	ADDQ $32, SI
	ADDQ $16, DI
	DECQ CX
	JNZ fh8
fhdone:
	VZEROUPPER
	RET
