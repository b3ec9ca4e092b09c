"""Weighted sums of int16 rows two taps at a time, for the rolled frames' passes (`affine`).

x86 multiplies adjacent int16 pairs and adds each pair's products into an int32 lane in one
instruction (pmaddwd; with AVX-512 VNNI, vpdpwssd also adds the running sum), three to six
times fewer instructions than converting each tap to float and multiplying. numba's loops
never produce it, so the kernel is written in LLVM IR (a numba intrinsic) that calls it by
name where the CPU has it, and elsewhere says the same in generic vector IR.

The data are laid out for it. A *pair plane* interleaves rows two by two,
pairs[q, x] = (src[2q, x], src[2q + 1, x]), so one load of 32 int16 holds two rows of 16
columns. Weights are int16 in 1/2^`BITS` (a weight's rounding moves a pixel by about
1e-4 px), side by side for taps 2p and 2p + 1 of each column.
Pure engine: nothing of the service.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numba
import numpy as np
import numpy.typing as npt
from llvmlite import binding as llvm
from llvmlite import ir
from numba import types
from numba.extending import intrinsic

from . import kernelcache

kernelcache.keep_in_step()  # before any kernel below loads from numba's cache

BITS = 14
"""Weights in 1/2^BITS: a bicubic weight stays within (-0.2, 1], far inside int16."""

LANES = 16
"""Output columns per kernel call: 32 int16 (two rows) make one 512-bit load."""

_I16, _I32, _I64 = ir.IntType(16), ir.IntType(32), ir.IntType(64)
_PAIRS = ir.VectorType(_I16, 2 * LANES)
_WIDE = ir.VectorType(_I32, 2 * LANES)
_SUMS = ir.VectorType(_I32, LANES)
_EVEN = ir.Constant(ir.VectorType(_I32, LANES), [2 * i for i in range(LANES)])
_ODD = ir.Constant(ir.VectorType(_I32, LANES), [2 * i + 1 for i in range(LANES)])


def _host_width() -> int:
    """The widest int16 pair multiply-add this CPU has, in bits: 512 (AVX-512 BW), 256
    (AVX2) or 0 (none: LLVM's generic vector code)."""
    if getattr(numba.config, "CPU_NAME", None) or getattr(numba.config, "CPU_FEATURES", None):
        return 0  # numba compiles for another CPU than this one (NUMBA_CPU_NAME)
    features = llvm.get_host_cpu_features()
    if features.get("avx512bw", False):
        return 512
    return 256 if features.get("avx2", False) else 0


WIDTH = _host_width()


def _pmadd(builder: ir.IRBuilder, a: ir.Value, b: ir.Value, width: int) -> ir.Value:
    """The pair products of two <32 x i16> added pairwise into <16 x i32>: pmaddwd. Called
    by name where the CPU has it; LLVM's own matching of the generic form (below) gave up
    on most pairs once the kernel was inlined into a pass."""
    module = builder.module
    if width == 512:
        fnty = ir.FunctionType(_SUMS, [_PAIRS, _PAIRS])
        fn = module.globals.get("llvm.x86.avx512.pmaddw.d.512") or ir.Function(
            module, fnty, "llvm.x86.avx512.pmaddw.d.512"
        )
        return builder.call(fn, [a, b])
    if width == 256:
        half_in, half_out = ir.VectorType(_I16, LANES), ir.VectorType(_I32, LANES // 2)
        fnty = ir.FunctionType(half_out, [half_in, half_in])
        fn = module.globals.get("llvm.x86.avx2.pmadd.wd") or ir.Function(
            module, fnty, "llvm.x86.avx2.pmadd.wd"
        )
        low = ir.Constant(ir.VectorType(_I32, LANES), list(range(LANES)))
        high = ir.Constant(ir.VectorType(_I32, LANES), list(range(LANES, 2 * LANES)))
        parts = [
            builder.call(fn, [builder.shuffle_vector(a, a, m), builder.shuffle_vector(b, b, m)])
            for m in (low, high)
        ]
        return builder.shuffle_vector(
            parts[0], parts[1], ir.Constant(ir.VectorType(_I32, LANES), list(range(LANES)))
        )
    product = builder.mul(builder.sext(a, _WIDE), builder.sext(b, _WIDE))
    even = builder.shuffle_vector(product, product, _EVEN)
    return builder.add(even, builder.shuffle_vector(product, product, _ODD))


def _splat(builder: ir.IRBuilder, value: ir.Value) -> ir.Value:
    """An int32 vector of LANES copies of `value` (int64)."""
    one = builder.insert_element(ir.Constant(_SUMS, None), builder.trunc(value, _I32), _I64(0))
    return builder.shuffle_vector(one, one, ir.Constant(_SUMS, [0] * LANES))


def _prefetch(builder: ir.IRBuilder, address: ir.Value) -> None:
    """Ask for the cache line at `address` (int64) ahead of its use: a hint, which never
    faults, even past the end of the plane."""
    module = builder.module
    pointer = ir.IntType(8).as_pointer()
    fnty = ir.FunctionType(ir.VoidType(), [pointer, _I32, _I32, _I32])
    fn = module.globals.get("llvm.prefetch.p0") or ir.Function(module, fnty, "llvm.prefetch.p0")
    builder.call(fn, [builder.inttoptr(address, pointer), _I32(0), _I32(3), _I32(1)])


AHEAD = 1
"""The kernel prefetches the pair row AHEAD past its last: a pass sweeps a strip of columns
down the output rows, each of which needs about one new pair row, a cache miss the kernel
otherwise waited on (measured: rolled frames 8 % less CPU; one row nearer or further, less
gained)."""


MIN_PAIRS, MAX_PAIRS = 4, 8
"""The tap pairs a kernel sums: from eight taps (a sloped table's least) to sixteen (a
shrink by up to about 3.5)."""


def kernel(out_bits: int, width: int = WIDTH) -> Callable[..., None]:
    """The intrinsic sums(pairs, src, src_step, w, w_step, out, shift, low, high) into
    `out_bits`-bit outputs: for each of LANES columns, the sum over p < pairs (MIN_PAIRS to
    MAX_PAIRS) of the pair products of the 32 int16 at address src + p src_step and at
    w + p w_step, rounded to nearest by an arithmetic shift of `shift` bits, clamped to
    [low, high] and stored as out_bits-bit integers at out (addresses and steps in bytes);
    the pair row `AHEAD` past the last summed is prefetched.
    `width`: the pmaddwd used (512, 256, or 0 for LLVM's generic code), the host's widest by
    default."""
    narrow = ir.VectorType(ir.IntType(out_bits), LANES)

    def codegen(context: Any, builder: ir.IRBuilder, signature: Any, args: Any) -> Any:
        pairs, src, src_step, w, w_step, out, shift, low, high = (
            context.cast(builder, value, ty, types.int64)
            for value, ty in zip(args, signature.args, strict=True)
        )

        def pair(p: int) -> ir.Value:
            at_src = builder.add(src, builder.mul(_I64(p), src_step))
            at_w = builder.add(w, builder.mul(_I64(p), w_step))
            a = builder.load(builder.inttoptr(at_src, _PAIRS.as_pointer()), align=2)
            b = builder.load(builder.inttoptr(at_w, _PAIRS.as_pointer()), align=2)
            return _pmadd(builder, a, b, width)

        _prefetch(builder, builder.add(src, builder.mul(builder.add(pairs, _I64(AHEAD)), src_step)))
        total = pair(0)
        for p in range(1, MIN_PAIRS):
            total = builder.add(total, pair(p))
        # Each pair past MIN_PAIRS behind a branch on `pairs` (the same for a whole pass).
        done = builder.append_basic_block("sums_done")
        arrivals = []
        for p in range(MIN_PAIRS, MAX_PAIRS):
            more = builder.append_basic_block(f"sums_pair{p}")
            arrivals.append((total, builder.block))
            builder.cbranch(builder.icmp_signed(">", pairs, _I64(p)), more, done)
            builder.position_at_end(more)
            total = builder.add(total, pair(p))
        arrivals.append((total, builder.block))
        builder.branch(done)
        builder.position_at_end(done)
        summed = builder.phi(_SUMS)
        for value, block in arrivals:
            summed.add_incoming(value, block)
        count = _splat(builder, shift)
        half = builder.shl(_splat(builder, _I64(1)), builder.sub(count, _splat(builder, _I64(1))))
        rounded = builder.ashr(builder.add(summed, half), count)
        lo, hi = _splat(builder, low), _splat(builder, high)
        rounded = builder.select(builder.icmp_signed("<", rounded, lo), lo, rounded)
        rounded = builder.select(builder.icmp_signed(">", rounded, hi), hi, rounded)
        target = builder.inttoptr(out, narrow.as_pointer())
        builder.store(builder.trunc(rounded, narrow), target, align=1)
        return context.get_dummy_value()

    # numba reads the typing function's parameters, so they are named one by one.
    def typing(
        typingctx: Any,
        pairs: Any,
        src: Any,
        src_step: Any,
        w: Any,
        w_step: Any,
        out: Any,
        shift: Any,
        low: Any,
        high: Any,
    ) -> Any:
        args = (pairs, src, src_step, w, w_step, out, shift, low, high)
        if not all(isinstance(a, types.Integer) for a in args):
            return None
        return types.void(*args), codegen

    return intrinsic(typing)


_sums8, _sums16 = kernel(8), kernel(16)


def _sums(
    pairs: int,
    bits: int,
    src: int,
    src_step: int,
    w: int,
    w_step: int,
    out: int,
    shift: int,
    low: int,
    high: int,
) -> None:
    """The kernel for `bits` (8 or 16) outputs: LANES columns (inlined where called; see
    `kernel` for the arguments)."""
    if bits == 8:
        _sums8(pairs, src, src_step, w, w_step, out, shift, low, high)
    else:
        _sums16(pairs, src, src_step, w, w_step, out, shift, low, high)


sums: Callable[..., None] = numba.njit(inline="always")(_sums)


def pair_plane(src: npt.NDArray[np.int16], margin: int) -> npt.NDArray[np.int16]:
    """`src` (h, w) as a pair plane (q, w, 2) with `margin` pairs of rows around it (their
    values unused: a kernel reads them only under zero weights, so they are left as they
    come); row r of `src` is half r % 2 of pair r // 2 + margin."""
    height, width = src.shape
    pairs = np.empty((margin + (height + 1) // 2 + margin, width, 2), np.int16)
    inner = pairs[margin : margin + height // 2]
    inner[:] = src[: height // 2 * 2].reshape(height // 2, 2, width).transpose(0, 2, 1)
    if height % 2:
        pairs[margin + height // 2, :, 0] = src[-1]
        pairs[margin + height // 2, :, 1] = src[-1]
    return pairs


def _fill(
    weights: npt.NDArray[np.float32],
    gain: float,
    even: npt.NDArray[np.int16],
    odd: npt.NDArray[np.int16],
) -> None:
    """`pair_tables`, compiled: each column's weights over `gain` in 1/2^BITS, rounded, the
    rounding's residue given to its largest weight."""
    taps = weights.shape[0]
    unit = (1 << BITS) / gain
    q = np.empty(taps, np.int64)
    for r in range(weights.shape[1]):
        for t in range(weights.shape[2]):
            total, largest = 0, 0
            for k in range(taps):
                q[k] = round(weights[k, r, t] * unit)
                total += q[k]
                if abs(weights[k, r, t]) > abs(weights[largest, r, t]):
                    largest = k
            q[largest] += (1 << BITS) - total
            for k in range(taps):
                even[k // 2, r, t, k % 2] = q[k]
                odd[(k + 1) // 2, r, t, (k + 1) % 2] = q[k]


_fill_jit: Callable[..., None] = numba.njit(nogil=True, cache=True)(_fill)


def pair_tables(
    weights: npt.NDArray[np.float32], gain: float
) -> tuple[npt.NDArray[np.int16], npt.NDArray[np.int16]]:
    """Weights (taps, m, phases) that sum to `gain` along the taps, as pair tables (pairs,
    m, phases, 2) in 1/2^BITS that sum to exactly 2^BITS: for sums from a row of even
    parity, tap k at pair k // 2, half k % 2; from a row of odd parity (one row earlier in
    the pair plane), at pair (k + 1) // 2, half (k + 1) % 2. Unused halves are zero."""
    taps, m, phases = weights.shape
    even = np.zeros(((taps + 1) // 2, m, phases, 2), np.int16)
    odd = np.zeros(((taps + 2) // 2, m, phases, 2), np.int16)
    _fill_jit(weights, gain, even, odd)
    return even, odd
