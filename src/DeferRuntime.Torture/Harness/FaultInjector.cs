using DeferRuntime.Diagnostics;

namespace DeferRuntime.Torture.Harness;

/// <summary>
/// Fault injection (issue 6, Faults): every Nth call of the test's handlers and work functions throws an
/// <see cref="InjectedFaultException"/>. Subscribed to the runtime's fault log, it counts which injected
/// faults the runtime reported and which faults it reported that nobody injected.
/// </summary>
internal sealed class FaultInjector : IDisposable
{
    private const int KeepUnexpected = 5;

    private readonly int _every;
    private readonly FaultLog _log;
    private readonly List<string> _unexpected = []; // L: itself
    private long _calls;     // A
    private long _injected;  // A
    private long _reported;  // A
    private long _unexpectedCount; // A

    public FaultInjector(int every, FaultLog log)
    {
        _every = every;
        _log = log;
        _log.Faulted += OnFault;
    }

    /// <summary>Throws on every Nth call across the test (the count is shared by all its callbacks).</summary>
    public void MaybeThrow(string where)
    {
        if (_every > 0 && Interlocked.Increment(ref _calls) % _every == 0)
        {
            Interlocked.Increment(ref _injected);
            throw new InjectedFaultException($"torture: injected fault in {where} (every {_every}th call)");
        }
    }

    public FaultAccounting Account()
    {
        lock (_unexpected)
        {
            return new FaultAccounting
            {
                Injected = Interlocked.Read(ref _injected),
                Reported = Interlocked.Read(ref _reported),
                UnexpectedCount = Interlocked.Read(ref _unexpectedCount),
                Unexpected = [.. _unexpected],
            };
        }
    }

    public void Dispose() => _log.Faulted -= OnFault;

    private void OnFault(object? sender, FaultRecord record)
    {
        if (record.Exception is InjectedFaultException)
        {
            Interlocked.Increment(ref _reported);
            return;
        }
        Interlocked.Increment(ref _unexpectedCount);
        lock (_unexpected)
        {
            if (_unexpected.Count < KeepUnexpected)
            {
                _unexpected.Add(record.ToString());
            }
        }
    }
}
