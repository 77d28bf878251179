using System.Diagnostics;
using System.Runtime.CompilerServices;
using DeferRuntime.Benchmarks.Support;

namespace DeferRuntime.Benchmarks.Latency;

/// <summary>
/// Where a deferred callback reports back: the first thing it does is read the clock, then it publishes
/// the reading and bumps the done count, both on one padded line written only by the consumer side. The
/// producer keeps its own send timestamp, so nothing travels producer -> consumer but the request itself.
/// </summary>
internal sealed class LatencyProbe
{
    private PaddedCounter _line; // written by the consumer (callback) only; read by the producer

    /// <summary>Callbacks seen so far.</summary>
    public ref long Done => ref _line.Value;

    /// <summary>The callback-start timestamp of the last callback (valid once <see cref="Done"/> shows it).</summary>
    public long LastStart => _line.Payload;

    /// <summary>Called at the very start of the deferred callback, on the consumer.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public void OnCallback()
    {
        _line.Payload = Stopwatch.GetTimestamp();
        Volatile.Write(ref _line.Value, _line.Value + 1); // release: Payload is visible first
    }
}
