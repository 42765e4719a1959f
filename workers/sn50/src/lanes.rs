//! The fast path of [`super::crps`]: the CRPS of four ensembles at a time, one per lane of an
//! AVX2 register, with the same floating-point operations per lane as the scalar port, so the
//! results are bit-identical to it (and to the validator).
//!
//! For a group of four CRPS terms (four columns of simulated changes), element `p` of the lane
//! buffer holds the four terms' values of path `p`. A bitonic sorting network sorts each lane
//! independently (compare-exchange is `min`/`max` on whole registers: no shuffles, no branches),
//! then properscoring's kernel runs on the four sorted lanes at once, its one data-dependent
//! branch replaced by computing both sides and blending per lane. Each lane performs exactly the
//! scalar kernel's operations in the scalar order; `min`/`max` may turn a `+0.0` into `-0.0`
//! among equal values, which cannot change the kernel's result (differences of equal values
//! and products with them are zeros, and adding a zero of either sign to the running integral,
//! which starts at `+0.0`, leaves it unchanged).
//!
//! Groups whose values contain a NaN, ensembles smaller than [`MIN_LANE_PATHS`], and CPUs
//! without AVX2 take the scalar path ([`scalar_term`]).

use super::crps::{crps_sorted, sort_nan_last, Paths};

/// Below this many paths the scalar path is used (the network's padding would dominate).
pub const MIN_LANE_PATHS: usize = 16;

/// One CRPS term: the ensemble is `change(sims[p][a], sims[p][b])` over paths `p` (or
/// `sims[p][b]` itself when `abs`), the observation `obs`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Term {
    pub a: usize,
    pub b: usize,
    pub abs: bool,
    pub obs: f64,
}

/// Price change between two grid points as the validator computes it, in basis points.
#[inline]
pub fn change_bp(prev: f64, next: f64) -> f64 {
    ((next - prev) / prev) * 10_000.0
}

/// The scalar port for one term (`column` is scratch space).
pub fn scalar_term(sims: &Paths, t: &Term, column: &mut Vec<f64>) -> f64 {
    column.clear();
    for p in 0..sims.n_paths() {
        let row = sims.row(p);
        column.push(if t.abs {
            row[t.b]
        } else {
            change_bp(row[t.a], row[t.b])
        });
    }
    let n_valid = sort_nan_last(column);
    crps_sorted(t.obs, column, n_valid)
}

/// Whether this CPU runs the lane path.
pub fn lanes_available() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::is_x86_feature_detected!("avx2")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// The unscaled CRPS of every term, in order, bit-identical to [`scalar_term`]. `force_scalar`
/// skips the lane path (for tests and comparisons).
pub fn term_values(sims: &Paths, terms: &[Term], force_scalar: bool) -> Vec<f64> {
    let mut out = Vec::with_capacity(terms.len());
    #[cfg(target_arch = "x86_64")]
    {
        if !force_scalar && sims.n_paths() >= MIN_LANE_PATHS && lanes_available() {
            // SAFETY: AVX2 is available (checked just above).
            unsafe { avx2::term_values(sims, terms, &mut out) };
            return out;
        }
    }
    let _ = force_scalar;
    let mut column = Vec::with_capacity(sims.n_paths());
    for t in terms {
        out.push(scalar_term(sims, t, &mut column));
    }
    out
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use super::{scalar_term, Term};
    use crate::crps::Paths;
    use std::arch::x86_64::*;

    /// The kernel's per-rank constants: `fc*fc` and `(fc-1)*(fc-1)` where `fc` is the
    /// forecast CDF after `i` members, accumulated as the kernel accumulates it (`fc += 1/W`).
    struct Ranks {
        fc2: Vec<f64>,
        fm1: Vec<f64>,
    }

    impl Ranks {
        fn new(n: usize) -> Ranks {
            let step = 1.0 / n as f64;
            let mut fc = 0.0f64;
            let (mut fc2, mut fm1) = (Vec::with_capacity(n), Vec::with_capacity(n));
            for _ in 0..n {
                fc2.push(fc * fc);
                fm1.push((fc - 1.0) * (fc - 1.0));
                fc += step;
            }
            Ranks { fc2, fm1 }
        }
    }

    /// Fill one lane buffer with a group's ensembles; returns whether a value (or an
    /// observation) is NaN, in which case the group must take the scalar path.
    #[target_feature(enable = "avx2")]
    unsafe fn fill(sims: &Paths, group: &[Term], buf: &mut [__m256d]) -> bool {
        let s = sims.n_paths();
        let t = sims.n_points();
        // Pad a short group by repeating its last term; those lanes are ignored.
        let lane = |j: usize| group[j.min(group.len() - 1)];
        let (t0, t1, t2, t3) = (lane(0), lane(1), lane(2), lane(3));
        let a_idx = [
            if t0.abs { t0.b } else { t0.a },
            if t1.abs { t1.b } else { t1.a },
            if t2.abs { t2.b } else { t2.a },
            if t3.abs { t3.b } else { t3.a },
        ];
        let b_idx = [t0.b, t1.b, t2.b, t3.b];
        let abs_mask = _mm256_castsi256_pd(_mm256_set_epi64x(
            -(t3.abs as i64),
            -(t2.abs as i64),
            -(t1.abs as i64),
            -(t0.abs as i64),
        ));
        let obs = _mm256_set_pd(t3.obs, t2.obs, t1.obs, t0.obs);
        let ten_k = _mm256_set1_pd(10_000.0);
        let mut nan = _mm256_cmp_pd(obs, obs, _CMP_UNORD_Q);
        // Consecutive terms of one interval (a, a+1, ...): two unaligned loads per path.
        let contiguous = (1..4).all(|j| a_idx[j] == a_idx[0] + j && b_idx[j] == b_idx[0] + j)
            && a_idx[0] + 3 < t
            && b_idx[0] + 3 < t;
        let ptr = sims.as_flat().as_ptr();
        for (p, slot) in buf.iter_mut().enumerate().take(s) {
            let row = ptr.add(p * t);
            let (va, vb) = if contiguous {
                (
                    _mm256_loadu_pd(row.add(a_idx[0])),
                    _mm256_loadu_pd(row.add(b_idx[0])),
                )
            } else {
                (
                    _mm256_set_pd(
                        *row.add(a_idx[3]),
                        *row.add(a_idx[2]),
                        *row.add(a_idx[1]),
                        *row.add(a_idx[0]),
                    ),
                    _mm256_set_pd(
                        *row.add(b_idx[3]),
                        *row.add(b_idx[2]),
                        *row.add(b_idx[1]),
                        *row.add(b_idx[0]),
                    ),
                )
            };
            // ((next - prev) / prev) * 10_000, or the price itself for `_abs`.
            let change = _mm256_mul_pd(_mm256_div_pd(_mm256_sub_pd(vb, va), va), ten_k);
            let v = _mm256_blendv_pd(change, vb, abs_mask);
            nan = _mm256_or_pd(nan, _mm256_cmp_pd(v, v, _CMP_UNORD_Q));
            *slot = v;
        }
        for slot in &mut buf[s..] {
            *slot = _mm256_set1_pd(f64::INFINITY);
        }
        _mm256_movemask_pd(nan) != 0
    }

    fn obs_of(group: &[Term]) -> [f64; 4] {
        let lane = |j: usize| group[j.min(group.len() - 1)].obs;
        [lane(0), lane(1), lane(2), lane(3)]
    }

    /// Fill, sort and score the terms four at a time, two groups side by side.
    ///
    /// # Safety
    /// The CPU must support AVX2.
    #[target_feature(enable = "avx2")]
    pub unsafe fn term_values(sims: &Paths, terms: &[Term], out: &mut Vec<f64>) {
        let s = sims.n_paths();
        let n_pad = s.next_power_of_two().max(16);
        let ranks = Ranks::new(s);
        let inf = _mm256_set1_pd(f64::INFINITY);
        let mut buf_a: Vec<__m256d> = vec![inf; n_pad];
        let mut buf_b: Vec<__m256d> = vec![inf; n_pad];
        let mut column = Vec::with_capacity(s);
        let mut scalar = |group: &[Term], out: &mut Vec<f64>| {
            for term in group {
                out.push(scalar_term(sims, term, &mut column));
            }
        };
        for pair in terms.chunks(8) {
            let (ga, gb) = pair.split_at(pair.len().min(4));
            let nan_a = fill(sims, ga, &mut buf_a);
            let nan_b = gb.is_empty() || fill(sims, gb, &mut buf_b);
            if !nan_a {
                sort_network(&mut buf_a);
            }
            if !nan_b {
                sort_network(&mut buf_b);
            }
            let (va, vb) = match (nan_a, nan_b) {
                (false, false) => {
                    let (x, y) = kernel2(&buf_a[..s], &buf_b[..s], obs_of(ga), obs_of(gb), &ranks);
                    (Some(x), Some(y))
                }
                (false, true) => (
                    Some(kernel2(&buf_a[..s], &buf_a[..s], obs_of(ga), obs_of(ga), &ranks).0),
                    None,
                ),
                (true, false) => (
                    None,
                    Some(kernel2(&buf_b[..s], &buf_b[..s], obs_of(gb), obs_of(gb), &ranks).0),
                ),
                (true, true) => (None, None),
            };
            match va {
                Some(v) => out.extend_from_slice(&v[..ga.len()]),
                None => scalar(ga, out),
            }
            if !gb.is_empty() {
                match vb {
                    Some(v) => out.extend_from_slice(&v[..gb.len()]),
                    None => scalar(gb, out),
                }
            }
        }
    }

    /// properscoring's kernel on two groups of four sorted lanes (no NaN), lane by lane the
    /// same operations as [`crate::crps::crps_sorted`]. The two groups are independent;
    /// running them side by side hides the latency of the running sums.
    #[target_feature(enable = "avx2")]
    unsafe fn kernel2(
        a: &[__m256d],
        b: &[__m256d],
        obs_a: [f64; 4],
        obs_b: [f64; 4],
        ranks: &Ranks,
    ) -> ([f64; 4], [f64; 4]) {
        let zero = _mm256_setzero_pd();
        let oa = _mm256_loadu_pd(obs_a.as_ptr());
        let ob = _mm256_loadu_pd(obs_b.as_ptr());
        // `seen`: all-ones once obs_cdf is 1 (obs lies below a member already seen).
        let (mut seen_a, mut seen_b) = (zero, zero);
        let (mut prev_a, mut prev_b) = (zero, zero);
        let (mut int_a, mut int_b) = (zero, zero);
        let n = a.len().min(b.len()).min(ranks.fc2.len());
        for i in 0..n {
            let fc2 = _mm256_set1_pd(*ranks.fc2.get_unchecked(i));
            let fm1 = _mm256_set1_pd(*ranks.fm1.get_unchecked(i));
            let fa = *a.get_unchecked(i);
            let fb = *b.get_unchecked(i);
            // The branch `obs_cdf == 0 && obs < f`.
            let take_a = _mm256_andnot_pd(seen_a, _mm256_cmp_pd(oa, fa, _CMP_LT_OQ));
            let take_b = _mm256_andnot_pd(seen_b, _mm256_cmp_pd(ob, fb, _CMP_LT_OQ));
            // Taken: integral += (obs - prev) * fc^2; integral += (f - obs) * (fc - 1)^2
            let taken_a = _mm256_add_pd(
                _mm256_add_pd(int_a, _mm256_mul_pd(_mm256_sub_pd(oa, prev_a), fc2)),
                _mm256_mul_pd(_mm256_sub_pd(fa, oa), fm1),
            );
            let taken_b = _mm256_add_pd(
                _mm256_add_pd(int_b, _mm256_mul_pd(_mm256_sub_pd(ob, prev_b), fc2)),
                _mm256_mul_pd(_mm256_sub_pd(fb, ob), fm1),
            );
            // Otherwise: integral += (f - prev) * (fc - obs_cdf)^2, i.e. fc^2 before the
            // observation and (fc - 1)^2 after it (the same products bit for bit).
            let d2_a = _mm256_blendv_pd(fc2, fm1, seen_a);
            let d2_b = _mm256_blendv_pd(fc2, fm1, seen_b);
            let other_a = _mm256_add_pd(int_a, _mm256_mul_pd(_mm256_sub_pd(fa, prev_a), d2_a));
            let other_b = _mm256_add_pd(int_b, _mm256_mul_pd(_mm256_sub_pd(fb, prev_b), d2_b));
            int_a = _mm256_blendv_pd(other_a, taken_a, take_a);
            int_b = _mm256_blendv_pd(other_b, taken_b, take_b);
            seen_a = _mm256_or_pd(seen_a, take_a);
            seen_b = _mm256_or_pd(seen_b, take_b);
            prev_a = fa;
            prev_b = fb;
        }
        // if obs_cdf == 0: integral += obs - prev
        let fin_a = _mm256_blendv_pd(
            _mm256_add_pd(int_a, _mm256_sub_pd(oa, prev_a)),
            int_a,
            seen_a,
        );
        let fin_b = _mm256_blendv_pd(
            _mm256_add_pd(int_b, _mm256_sub_pd(ob, prev_b)),
            int_b,
            seen_b,
        );
        let (mut ra, mut rb) = ([0.0f64; 4], [0.0f64; 4]);
        _mm256_storeu_pd(ra.as_mut_ptr(), fin_a);
        _mm256_storeu_pd(rb.as_mut_ptr(), fin_b);
        (ra, rb)
    }

    #[inline(always)]
    unsafe fn cx(r: &mut [__m256d], i: usize, j: usize) {
        let (a, b) = (r[i], r[j]);
        r[i] = _mm256_min_pd(a, b);
        r[j] = _mm256_max_pd(a, b);
    }

    /// Half-cleaner stages with strides `from`, from/2, ..., 1 inside a block of 16.
    #[inline(always)]
    unsafe fn cleaners16(r: &mut [__m256d; 16], from: usize) {
        let mut s = from;
        while s > 0 {
            let mut b = 0;
            while b < 16 {
                for i in 0..s {
                    cx(r, b + i, b + i + s);
                }
                b += 2 * s;
            }
            s /= 2;
        }
    }

    /// Sort a block of 16 registers lane by lane.
    #[inline(always)]
    unsafe fn sort16(r: &mut [__m256d; 16]) {
        let mut size = 2;
        while size <= 16 {
            let half = size / 2;
            let mut b = 0;
            while b < 16 {
                for i in 0..half {
                    cx(r, b + i, b + size - 1 - i);
                }
                b += size;
            }
            cleaners16(r, half / 2);
            size *= 2;
        }
    }

    /// Compare-exchange two registers in place: the lower address gets the minimum.
    #[inline(always)]
    unsafe fn cxr(a: &mut __m256d, b: &mut __m256d) {
        let (x, y) = (*a, *b);
        *a = _mm256_min_pd(x, y);
        *b = _mm256_max_pd(x, y);
    }

    /// The flip stage of a merge of blocks of `size`, fused with the next `extra` (0 to 2)
    /// half-cleaner stages (strides `size/4`, `size/8`). Strides must stay >= 16.
    #[inline(always)]
    unsafe fn flip_pass(p: *mut __m256d, n: usize, size: usize, extra: usize) {
        let half = size / 2;
        let mut b = 0;
        while b < n {
            let base = p.add(b);
            let top = size - 1;
            match extra {
                0 => {
                    for i in 0..half {
                        let (x, y) = (base.add(i), base.add(top - i));
                        let (mut l, mut h) = (*x, *y);
                        cxr(&mut l, &mut h);
                        *x = l;
                        *y = h;
                    }
                }
                1 => {
                    let q = half / 2;
                    for i in 0..q {
                        let ad = [i, i + q, top - i - q, top - i];
                        let (mut l0, mut l1, mut u1, mut u0) = (
                            *base.add(ad[0]),
                            *base.add(ad[1]),
                            *base.add(ad[2]),
                            *base.add(ad[3]),
                        );
                        cxr(&mut l0, &mut u0);
                        cxr(&mut l1, &mut u1);
                        cxr(&mut l0, &mut l1);
                        cxr(&mut u1, &mut u0);
                        *base.add(ad[0]) = l0;
                        *base.add(ad[1]) = l1;
                        *base.add(ad[2]) = u1;
                        *base.add(ad[3]) = u0;
                    }
                }
                _ => {
                    let q = half / 4;
                    for i in 0..q {
                        let ad = [
                            i,
                            i + q,
                            i + 2 * q,
                            i + 3 * q,
                            top - i - 3 * q,
                            top - i - 2 * q,
                            top - i - q,
                            top - i,
                        ];
                        let mut r = [_mm256_setzero_pd(); 8];
                        for (k, a) in ad.iter().enumerate() {
                            r[k] = *base.add(*a);
                        }
                        let [mut l0, mut l1, mut l2, mut l3, mut u3, mut u2, mut u1, mut u0] = r;
                        // flip
                        cxr(&mut l0, &mut u0);
                        cxr(&mut l1, &mut u1);
                        cxr(&mut l2, &mut u2);
                        cxr(&mut l3, &mut u3);
                        // stride size/4
                        cxr(&mut l0, &mut l2);
                        cxr(&mut l1, &mut l3);
                        cxr(&mut u3, &mut u1);
                        cxr(&mut u2, &mut u0);
                        // stride size/8
                        cxr(&mut l0, &mut l1);
                        cxr(&mut l2, &mut l3);
                        cxr(&mut u3, &mut u2);
                        cxr(&mut u1, &mut u0);
                        let r = [l0, l1, l2, l3, u3, u2, u1, u0];
                        for (k, a) in ad.iter().enumerate() {
                            *base.add(*a) = r[k];
                        }
                    }
                }
            }
            b += size;
        }
    }

    /// `stages` (1 to 3) half-cleaner stages with strides `s`, `s/2`, `s/4` in one pass.
    #[inline(always)]
    unsafe fn cleaner_pass(p: *mut __m256d, n: usize, s: usize, stages: usize) {
        let mut b = 0;
        while b < n {
            let base = p.add(b);
            match stages {
                1 => {
                    for i in 0..s {
                        let (x, y) = (base.add(i), base.add(i + s));
                        let (mut l, mut h) = (*x, *y);
                        cxr(&mut l, &mut h);
                        *x = l;
                        *y = h;
                    }
                }
                2 => {
                    let q = s / 2;
                    for i in 0..q {
                        let x = [
                            base.add(i),
                            base.add(i + q),
                            base.add(i + s),
                            base.add(i + s + q),
                        ];
                        let (mut a0, mut a1, mut a2, mut a3) = (*x[0], *x[1], *x[2], *x[3]);
                        cxr(&mut a0, &mut a2);
                        cxr(&mut a1, &mut a3);
                        cxr(&mut a0, &mut a1);
                        cxr(&mut a2, &mut a3);
                        *x[0] = a0;
                        *x[1] = a1;
                        *x[2] = a2;
                        *x[3] = a3;
                    }
                }
                _ => {
                    let q = s / 4;
                    for i in 0..q {
                        let mut r = [_mm256_setzero_pd(); 8];
                        for (k, slot) in r.iter_mut().enumerate() {
                            *slot = *base.add(i + k * q);
                        }
                        let [mut a0, mut a1, mut a2, mut a3, mut a4, mut a5, mut a6, mut a7] = r;
                        cxr(&mut a0, &mut a4);
                        cxr(&mut a1, &mut a5);
                        cxr(&mut a2, &mut a6);
                        cxr(&mut a3, &mut a7);
                        cxr(&mut a0, &mut a2);
                        cxr(&mut a1, &mut a3);
                        cxr(&mut a4, &mut a6);
                        cxr(&mut a5, &mut a7);
                        cxr(&mut a0, &mut a1);
                        cxr(&mut a2, &mut a3);
                        cxr(&mut a4, &mut a5);
                        cxr(&mut a6, &mut a7);
                        let r = [a0, a1, a2, a3, a4, a5, a6, a7];
                        for (k, v) in r.iter().enumerate() {
                            *base.add(i + k * q) = *v;
                        }
                    }
                }
            }
            b += 2 * s;
        }
    }

    /// Bitonic sort of each lane (ascending); `v.len()` is a power of two >= 16. Stages with
    /// strides below 16 run on blocks of 16 held in registers; the larger ones are fused up to
    /// three per pass over memory.
    #[target_feature(enable = "avx2")]
    pub unsafe fn sort_network(v: &mut [__m256d]) {
        let n = v.len();
        debug_assert!(n.is_power_of_two() && n >= 16);
        let p = v.as_mut_ptr();
        for b in (0..n).step_by(16) {
            let blk = p.add(b) as *mut [__m256d; 16];
            let mut r = *blk;
            sort16(&mut r);
            *blk = r;
        }
        let mut size = 32;
        while size <= n {
            // Memory stages: the flip, then half-cleaners with strides size/4 ... 16.
            let mut cleaners = 0;
            let mut s = size / 4;
            while s >= 16 {
                cleaners += 1;
                s /= 2;
            }
            let with_flip = cleaners.min(2);
            flip_pass(p, n, size, with_flip);
            let mut s = (size / 4) >> with_flip;
            let mut left = cleaners - with_flip;
            while left > 0 {
                let k = left.min(3);
                cleaner_pass(p, n, s, k);
                s >>= k;
                left -= k;
            }
            for b in (0..n).step_by(16) {
                let blk = p.add(b) as *mut [__m256d; 16];
                let mut r = *blk;
                cleaners16(&mut r, 8);
                *blk = r;
            }
            size *= 2;
        }
    }

    #[cfg(test)]
    pub fn sort_lanes_for_test(cols: [&[f64]; 4]) -> [Vec<f64>; 4] {
        let n = cols[0].len();
        let n_pad = n.next_power_of_two().max(16);
        unsafe {
            let mut buf = vec![_mm256_set1_pd(f64::INFINITY); n_pad];
            for (p, slot) in buf.iter_mut().enumerate().take(n) {
                *slot = _mm256_set_pd(cols[3][p], cols[2][p], cols[1][p], cols[0][p]);
            }
            sort_network(&mut buf);
            let mut out: [Vec<f64>; 4] = Default::default();
            for slot in &buf[..n] {
                let mut l = [0.0; 4];
                _mm256_storeu_pd(l.as_mut_ptr(), *slot);
                for j in 0..4 {
                    out[j].push(l[j]);
                }
            }
            out
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn lcg(seed: u64) -> impl FnMut() -> f64 {
        let mut x = seed.wrapping_mul(6364136223846793005).wrapping_add(1);
        move || {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (x >> 11) as f64 / (1u64 << 53) as f64
        }
    }

    fn random_paths(seed: u64, n_paths: usize, n_points: usize, vol: f64) -> Paths {
        let mut next = lcg(seed);
        let mut data = Vec::new();
        for _ in 0..n_paths {
            let mut x = 100.0;
            for _ in 0..n_points {
                data.push(x);
                x *= 1.0 + vol * (next() - 0.5);
            }
        }
        Paths::from_flat(data, n_paths).unwrap()
    }

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn network_sorts_each_lane() {
        if !lanes_available() {
            return;
        }
        for n in [16usize, 17, 100, 1000, 1024, 2000] {
            let mut next = lcg(n as u64);
            let cols: Vec<Vec<f64>> = (0..4)
                .map(|j| {
                    (0..n)
                        .map(|i| match (j, i % 7) {
                            (1, 0) => 0.5,            // many ties
                            (2, _) => (i % 3) as f64, // few distinct values
                            (3, 1) => f64::NEG_INFINITY,
                            _ => next() * 200.0 - 100.0,
                        })
                        .collect()
                })
                .collect();
            let got = avx2::sort_lanes_for_test([&cols[0], &cols[1], &cols[2], &cols[3]]);
            for j in 0..4 {
                let mut want = cols[j].clone();
                want.sort_by(f64::total_cmp);
                assert_eq!(got[j], want, "n={n} lane {j}");
            }
        }
    }

    #[test]
    fn lane_path_equals_scalar_path_bit_for_bit() {
        // Mixed groups: consecutive terms, strided terms, `_abs` terms, short last group.
        let sims = random_paths(7, 1000, 61, 0.01);
        let real = random_paths(8, 1, 61, 0.01);
        let r = real.row(0);
        let mut terms = Vec::new();
        for k in 0..60 {
            terms.push(Term {
                a: k,
                b: k + 1,
                abs: false,
                obs: change_bp(r[k], r[k + 1]),
            });
        }
        for k in (0..55).step_by(5) {
            terms.push(Term {
                a: k,
                b: k + 5,
                abs: false,
                obs: change_bp(r[k], r[k + 5]),
            });
        }
        terms.push(Term {
            a: 0,
            b: 60,
            abs: true,
            obs: r[60],
        });
        terms.push(Term {
            a: 0,
            b: 7,
            abs: false,
            obs: 1e9,
        }); // obs above every member
        terms.push(Term {
            a: 0,
            b: 7,
            abs: false,
            obs: -1e9,
        }); // and below
        let fast = term_values(&sims, &terms, false);
        let slow = term_values(&sims, &terms, true);
        assert_eq!(fast.len(), terms.len());
        for (i, (f, s)) in fast.iter().zip(&slow).enumerate() {
            assert_eq!(f.to_bits(), s.to_bits(), "term {i}: {f} vs {s}");
        }
    }

    #[test]
    fn nan_members_fall_back_to_the_scalar_path() {
        let mut sims = random_paths(3, 40, 10, 0.02).as_flat().to_vec();
        sims[10 * 5 + 3] = f64::NAN; // path 5, point 3
        let sims = Paths::from_flat(sims, 40).unwrap();
        let terms: Vec<Term> = (0..9)
            .map(|k| Term {
                a: k,
                b: k + 1,
                abs: false,
                obs: 0.3,
            })
            .collect();
        let fast = term_values(&sims, &terms, false);
        let slow = term_values(&sims, &terms, true);
        for (f, s) in fast.iter().zip(&slow) {
            assert_eq!(f.to_bits(), s.to_bits());
        }
        assert!(
            fast.iter().all(|v| v.is_finite()),
            "one NaN member is dropped, not NaN"
        );
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        #[test]
        fn lanes_match_scalar_on_random_ensembles(seed in 0u64..10_000, n_paths in 16usize..300, vol in 0.0001f64..0.2) {
            let sims = random_paths(seed, n_paths, 13, vol);
            let real = random_paths(seed + 1, 1, 13, vol);
            let r = real.row(0);
            let terms: Vec<Term> = (0..12)
                .map(|k| Term { a: k, b: k + 1, abs: k == 11, obs: if k == 11 { r[12] } else { change_bp(r[k], r[k + 1]) } })
                .collect();
            let fast = term_values(&sims, &terms, false);
            let slow = term_values(&sims, &terms, true);
            for (f, s) in fast.iter().zip(&slow) {
                prop_assert_eq!(f.to_bits(), s.to_bits());
            }
        }
    }
}
