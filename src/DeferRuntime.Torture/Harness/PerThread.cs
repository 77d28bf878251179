namespace DeferRuntime.Torture.Harness;

/// <summary>
/// One counter per load thread, each on its own cache line: the owner thread writes its slot often and
/// others read it only for progress, so neighbouring slots must not share a line (false sharing would
/// make the counters, not the lock, the contended thing).
/// </summary>
internal sealed class PerThread(int threads)
{
    private const int Stride = 8; // longs per 64-byte line

    private readonly long[] _slots = new long[(threads + 1) * Stride];

    public int Count => threads;

    public ref long this[int thread] => ref _slots[(thread + 1) * Stride];

    public long Sum()
    {
        long sum = 0;
        for (int i = 0; i < threads; i++)
        {
            sum += Volatile.Read(ref this[i]);
        }
        return sum;
    }

    public long[] ToArray()
    {
        var values = new long[threads];
        for (int i = 0; i < threads; i++)
        {
            values[i] = Volatile.Read(ref this[i]);
        }
        return values;
    }
}
