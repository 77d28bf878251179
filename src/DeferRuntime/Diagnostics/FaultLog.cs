namespace DeferRuntime.Diagnostics;

/// <summary>
/// Where oopses go: counted, the most recent kept, and announced through <see cref="Faulted"/>. A
/// throwing handler never kills its CPU thread; with <see cref="RuntimeOptions.PanicOnOops"/> the
/// runtime panics instead.
/// </summary>
public sealed class FaultLog
{
    private const int Keep = 64;
    private readonly Lock _lock = new();
    private readonly Queue<FaultRecord> _recent = new(); // L: _lock
    private long _count; // A

    /// <summary>Raised on the thread that caught the fault, outside any runtime lock. Exceptions it throws are swallowed.</summary>
    public event EventHandler<FaultRecord>? Faulted;

    /// <summary>Faults reported since boot.</summary>
    public long Count => Interlocked.Read(ref _count);

    /// <summary>The most recent faults (up to 64), oldest first.</summary>
    public IReadOnlyList<FaultRecord> Recent
    {
        get
        {
            lock (_lock)
            {
                return _recent.ToArray();
            }
        }
    }

    internal void Add(FaultRecord record)
    {
        Interlocked.Increment(ref _count);
        lock (_lock)
        {
            if (_recent.Count == Keep)
            {
                _recent.Dequeue();
            }
            _recent.Enqueue(record);
        }
        try
        {
            Faulted?.Invoke(this, record);
        }
#pragma warning disable CA1031 // a subscriber's bug must not take the CPU thread down with it
        catch (Exception)
#pragma warning restore CA1031
        {
        }
    }
}
