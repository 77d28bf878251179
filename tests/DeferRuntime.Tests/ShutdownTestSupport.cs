using System.Diagnostics;

namespace DeferRuntime.Tests;

/// <summary>Shutdown with a bound that only catches a hang (it measures nothing).</summary>
internal static class ShutdownTesting
{
    public static readonly TimeSpan Timeout = TimeSpan.FromMilliseconds(250);
    public static readonly TimeSpan HangBound = TimeSpan.FromSeconds(5);

    /// <summary>Shutdown(<see cref="Timeout"/>) on a thread of its own; fails if it has not returned within <see cref="HangBound"/>.</summary>
    public static RuntimeShutdownReport ShutdownWithinBound(Runtime rt)
    {
        RuntimeShutdownReport? report = null;
        var clock = Stopwatch.StartNew();
        Guarded.Run(() => report = rt.Shutdown(Timeout), "shutdown");
        Assert.True(clock.Elapsed < HangBound, $"Shutdown({Timeout.TotalMilliseconds} ms) took {clock.Elapsed}");
        return report!;
    }
}

/// <summary>
/// A callback that does not return until the test lets it go: spinning (a handler looping on a flag) or
/// blocked in the OS; and a count of the starts of callbacks queued behind it. Disposing lets it go and
/// waits for it to return, so that no thread of the test process spins on after the test.
/// </summary>
internal sealed class StuckCallback : IDisposable
{
    private readonly ManualResetEventSlim _gate = new();
    private volatile bool _released;
    private int _entered;
    private int _returned;
    private int _starts;
    private Thread? _thread;

    /// <summary>Starts of the callbacks that counted themselves with <see cref="CountStart"/>.</summary>
    public int Starts => Volatile.Read(ref _starts);

    public void CountStart() => Interlocked.Increment(ref _starts);

    public void Spin()
    {
        Enter();
        while (!_released)
        {
            Thread.Yield();
        }
        Interlocked.Increment(ref _returned);
    }

    public void Block()
    {
        Enter();
        _gate.Wait();
        Interlocked.Increment(ref _returned);
    }

    private void Enter()
    {
        _thread = Thread.CurrentThread;
        Interlocked.Increment(ref _entered);
    }

    public void WaitEntered() => Wait.Until(() => Volatile.Read(ref _entered) > 0, "the stuck callback to start");

    public void Release()
    {
        _released = true;
        _gate.Set();
    }

    /// <summary>Lets it go and waits for its thread to end, so that whatever that thread would still start has had its chance.</summary>
    public void ReleaseAndJoinItsThread()
    {
        Release();
        Assert.True(_thread!.Join(Wait.Ceiling), $"{_thread.Name} did not exit once its stuck callback returned");
    }

    public void Dispose()
    {
        Release();
        Wait.Until(() => Volatile.Read(ref _returned) == Volatile.Read(ref _entered), "the stuck callback to return once released");
        _gate.Dispose();
    }
}
