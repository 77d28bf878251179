using DeferRuntime.Platform;

namespace DeferRuntime.Torture.Harness;

/// <summary>
/// What the shuffles of one test did: moves made, and whether the OS let the load threads be pinned
/// (sched_setaffinity), with the first refusal's reason. Pinning is reported, never faked.
/// </summary>
internal sealed class PlacementLog(bool pinning)
{
    private long _moves;        // A
    private long _pins;         // A
    private long _pinFailures;  // A
    private string? _firstError; // A: first refusal wins

    public bool PinningRequested => pinning;

    public long Moves => Interlocked.Read(ref _moves);

    public long Pins => Interlocked.Read(ref _pins);

    public long PinFailures => Interlocked.Read(ref _pinFailures);

    public string? FirstPinError => Volatile.Read(ref _firstError);

    public void Moved() => Interlocked.Increment(ref _moves);

    /// <summary>Pins the calling thread to OS core <paramref name="core"/> if pinning was asked for.</summary>
    public void Pin(int core)
    {
        if (!pinning)
        {
            return;
        }
        string? error = ThreadPlacement.PinCurrentThread(core);
        if (error is null)
        {
            Interlocked.Increment(ref _pins);
            return;
        }
        Interlocked.Increment(ref _pinFailures);
        Interlocked.CompareExchange(ref _firstError, error, null);
    }

    /// <summary>"pinned 12 times", "pinning refused 12 times: why", or "pinning off".</summary>
    public string Describe() =>
        !pinning ? "pinning off"
        : PinFailures == 0 ? $"pinned {Pins} times"
        : $"pinning refused {PinFailures} of {Pins + PinFailures} times: {FirstPinError}";
}
