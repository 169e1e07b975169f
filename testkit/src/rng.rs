//! Seeded randomness that can be replayed: the seed is printed, and `PATCHWATCH_TEST_SEED`
//! sets it.

use rand::rngs::StdRng;
use rand::SeedableRng;

/// A random generator for the test `what`. Its seed comes from `PATCHWATCH_TEST_SEED` when
/// set, otherwise from the OS; either way it is printed so that a failure can be replayed.
pub fn seeded(what: &str) -> StdRng {
    let seed = std::env::var("PATCHWATCH_TEST_SEED")
        .ok()
        .and_then(|s| s.parse::<u64>().ok())
        .unwrap_or_else(rand::random);
    println!("{what}: seed {seed} (replay with PATCHWATCH_TEST_SEED={seed})");
    StdRng::seed_from_u64(seed)
}
