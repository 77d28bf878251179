namespace DeferRuntime.Cpus;

/// <summary>
/// call_single_data_t: one cross-CPU function call, run in hard-IRQ context on the target CPU by its
/// CALL_FUNCTION vector. Pre-allocate one and pass it to <see cref="Runtime.SmpCallFunctionSingleAsync"/>
/// to make calls that allocate nothing.
/// </summary>
public sealed class CallSingleData : IIntrusiveNode<CallSingleData>
{
    private const int LockedBit = 1; // CSD_FLAG_LOCK: queued or running; the owner may not reuse it yet

    private readonly Action<object?> _func;
    private int _flags; // A: LockedBit
    private CallSingleData? _next; // A: owned by the call queue while locked

    /// <summary>INIT_CSD(): the function and its argument.</summary>
    public CallSingleData(Action<object?> func, object? info = null)
    {
        ArgumentNullException.ThrowIfNull(func);
        _func = func;
        Info = info;
    }

    /// <summary>The argument passed to the function.</summary>
    public object? Info { get; set; }

    /// <summary>True while the call is queued or running (csd_lock held).</summary>
    public bool IsBusy => (Volatile.Read(ref _flags) & LockedBit) != 0;

    /// <summary>The exception the last run threw, if any.</summary>
    public Exception? Fault { get; internal set; }

    CallSingleData? IIntrusiveNode<CallSingleData>.Next { get => _next; set => _next = value; }

    internal bool TryLock() => (Interlocked.Or(ref _flags, LockedBit) & LockedBit) == 0;

    internal void Unlock() => Interlocked.And(ref _flags, ~LockedBit);

    internal void Invoke() => _func(Info);
}
