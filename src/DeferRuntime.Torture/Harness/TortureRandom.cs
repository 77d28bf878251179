using System.Runtime.CompilerServices;

namespace DeferRuntime.Torture.Harness;

/// <summary>
/// torture_random(): a per-thread pseudo-random stream (xorshift64*), seeded from the run's seed and the
/// thread's stream number so a run's choices repeat with the same seed. A struct kept in the thread's
/// own frame: no sharing, no allocation, no lock, which System.Random (shared) would need.
/// </summary>
internal struct TortureRandom
{
    private ulong _state;

    public TortureRandom(int seed, int stream)
    {
        // SplitMix64 of (seed, stream), so neighbouring streams do not start correlated.
        ulong z = ((ulong)(uint)seed << 32) ^ (uint)stream;
        z += 0x9E3779B97F4A7C15UL;
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9UL;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBUL;
        z ^= z >> 31;
        _state = z == 0 ? 1 : z;
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public ulong Next()
    {
        ulong x = _state;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        _state = x;
        return x * 0x2545F4914F6CDD1DUL;
    }

    /// <summary>0 to <paramref name="n"/> - 1.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public int Next(int n) => (int)(Next() % (ulong)n);

    /// <summary>True once in <paramref name="n"/> calls on average: locktorture's <c>!(torture_random() % n)</c>.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public bool OneIn(long n) => n <= 1 || Next() % (ulong)n == 0;

    /// <summary>True with probability <paramref name="p"/>.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public bool Chance(double p) => p > 0 && (Next() >> 11) * (1.0 / (1UL << 53)) < p;
}
