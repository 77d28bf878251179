namespace DeferRuntime.Cpus;

/// <summary>
/// Spin, then yield, then sleep: how every runtime thread waits for another thread of the same CPU.
/// </summary>
/// <remarks>
/// Threads bound to one CPU are pinned to one core at different OS priorities. A spinner that never
/// sleeps can starve a lower-priority holder on its own core forever (priority inversion), so past a
/// bound the wait sleeps for real; correctness never depends on the OS preempting the spinner.
/// </remarks>
internal struct Backoff
{
    // Spins are cheap and win when the holder runs on the other core; yields let a same-core holder of
    // equal priority run; sleeps let a lower-priority (nice 19) same-core holder run.
    private const int SpinRounds = 12;
    private const int YieldRounds = 24;

    private int _round;

    public void Wait()
    {
        if (_round < SpinRounds)
        {
            Thread.SpinWait(8 << Math.Min(_round, 6));
        }
        else if (_round < SpinRounds + YieldRounds)
        {
            Thread.Yield();
        }
        else
        {
            ThreadContext.NapInSpinWait();
        }
        _round++;
    }

    /// <summary>Waits until <paramref name="condition"/> holds.</summary>
    public static void Until<TState>(TState state, Func<TState, bool> condition)
    {
        var backoff = default(Backoff);
        while (!condition(state))
        {
            backoff.Wait();
        }
    }
}
