//! numpy's `SeedSequence(seed).generate_state(n)`, which ale-py's `AtariEnv.seed_game` uses to derive ALE's
//! `random_seed` from the seed given to `reset` (`numpy/random/bit_generator.pyx`, numpy 2.x).

// Constants of numpy's SeedSequence (bit_generator.pyx), from Melissa O'Neill's seed_seq design.
const INIT_A: u32 = 0x43b0_d7e5;
const MULT_A: u32 = 0x931e_8875;
const INIT_B: u32 = 0x8b51_f9dd;
const MULT_B: u32 = 0x58f3_8ded;
const MIX_MULT_L: u32 = 0xca01_f9dd;
const MIX_MULT_R: u32 = 0x4973_f715;
const XSHIFT: u32 = 16;
const POOL_SIZE: usize = 4;

fn hashmix(value: u32, hash_const: &mut u32) -> u32 {
    let mut v = value ^ *hash_const;
    *hash_const = hash_const.wrapping_mul(MULT_A);
    v = v.wrapping_mul(*hash_const);
    v ^ (v >> XSHIFT)
}

fn mix(x: u32, y: u32) -> u32 {
    let r = MIX_MULT_L.wrapping_mul(x).wrapping_sub(MIX_MULT_R.wrapping_mul(y));
    r ^ (r >> XSHIFT)
}

/// `np.random.SeedSequence(seed).generate_state(N)` as `u32` words (no spawn key).
///
/// ```
/// // ale-py passes word 1 to ALE as an int32: reset(seed=0) gives random_seed -617818137.
/// let w = bellman_envs::atari::seed_sequence::<2>(0);
/// assert_eq!(w[1] as i32, -617818137);
/// ```
pub fn seed_sequence<const N: usize>(seed: u64) -> [u32; N] {
    // _coerce_to_uint32_array: an integer becomes its little-endian 32-bit words (0 -> [0]).
    let entropy: Vec<u32> = if seed >> 32 == 0 { vec![seed as u32] } else { vec![seed as u32, (seed >> 32) as u32] };
    let mut pool = [0u32; POOL_SIZE];
    let mut hc = INIT_A;
    for (i, p) in pool.iter_mut().enumerate() {
        *p = hashmix(entropy.get(i).copied().unwrap_or(0), &mut hc);
    }
    for i_src in 0..POOL_SIZE {
        for i_dst in 0..POOL_SIZE {
            if i_src != i_dst {
                pool[i_dst] = mix(pool[i_dst], hashmix(pool[i_src], &mut hc));
            }
        }
    }
    for &e in entropy.iter().skip(POOL_SIZE) {
        for p in pool.iter_mut() {
            *p = mix(*p, hashmix(e, &mut hc));
        }
    }
    let mut out = [0u32; N];
    let mut hb = INIT_B;
    for (i, o) in out.iter_mut().enumerate() {
        let mut v = pool[i % POOL_SIZE] ^ hb;
        hb = hb.wrapping_mul(MULT_B);
        v = v.wrapping_mul(hb);
        *o = v ^ (v >> XSHIFT);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_numpy() {
        // Values printed by numpy 2.4.6: list(np.random.SeedSequence(s).generate_state(2)).
        assert_eq!(seed_sequence::<2>(0), [2968811710, 3677149159]);
        assert_eq!(seed_sequence::<2>(1), [1835504127, 1731038949]);
        assert_eq!(seed_sequence::<2>(42), [3444837047, 2669555309]);
        assert_eq!(seed_sequence::<2>((1 << 40) + 5), [3767146251, 3672381269]);
    }
}
