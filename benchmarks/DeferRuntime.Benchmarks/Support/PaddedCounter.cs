using System.Runtime.InteropServices;

namespace DeferRuntime.Benchmarks.Support;

/// <summary>
/// Counters alone on their cache line (64 bytes of padding on each side), so the thread that spins on
/// them and the one thread that writes them share that line and nothing else: a handoff then costs one
/// cache-line transfer for the signal, not false sharing with the fields around it.
/// </summary>
[StructLayout(LayoutKind.Explicit, Size = 192)]
internal struct PaddedCounter
{
    /// <summary>The count the spinner waits on.</summary>
    [FieldOffset(64)] public long Value;

    /// <summary>A second word of the same line, written by the same thread just before <see cref="Value"/> (a timestamp).</summary>
    [FieldOffset(72)] public long Payload;
}

/// <summary>A heap-allocated <see cref="PaddedCounter"/>, shared by a producer and the callbacks it defers.</summary>
internal sealed class DoneCounter
{
    public PaddedCounter Line;
}
