using System.Runtime.CompilerServices;
using DeferRuntime.Platform;

namespace DeferRuntime.Cpus;

/// <summary>
/// Parks one thread until another unparks it or a timeout passes: a futex word on Linux (the cheapest
/// wake the OS has), a monitor elsewhere. A signal sent before the park is kept, so no wake-up is lost;
/// a park may also return early (spurious), so callers re-check their condition.
/// </summary>
internal sealed unsafe class Parker
{
    private readonly bool _useFutex;
    // The futex needs a fixed address: a pinned array outlives every thread that could still touch it,
    // so a late Unpark after shutdown can never write freed memory.
    private readonly int[]? _pinned;
    private readonly int* _word; // A: 0 = no signal, 1 = signalled
    private readonly object _monitor = new();
    private bool _signalled; // L: _monitor (fallback only)

    public Parker()
    {
        _useFutex = Futex.IsAvailable;
        if (_useFutex)
        {
            _pinned = GC.AllocateArray<int>(16, pinned: true);
            _word = (int*)Unsafe.AsPointer(ref _pinned[0]);
        }
    }

    /// <summary>Blocks until <see cref="Unpark"/> or until <paramref name="timeoutNs"/> (negative: forever).</summary>
    public void Park(long timeoutNs)
    {
        if (_useFutex)
        {
            if (Interlocked.Exchange(ref *_word, 0) != 0)
            {
                return;
            }
            Futex.Wait(_word, 0, timeoutNs);
            Interlocked.Exchange(ref *_word, 0);
            return;
        }

        lock (_monitor)
        {
            if (!_signalled)
            {
                int ms = timeoutNs < 0 ? Timeout.Infinite : (int)Math.Min(int.MaxValue, Math.Max(1, timeoutNs / 1_000_000));
                Monitor.Wait(_monitor, ms);
            }
            _signalled = false;
        }
    }

    /// <summary>Wakes the parked thread, or makes its next park return at once.</summary>
    public void Unpark()
    {
        if (_useFutex)
        {
            if (Interlocked.Exchange(ref *_word, 1) == 0)
            {
                Futex.Wake(_word, 1);
            }
            return;
        }

        lock (_monitor)
        {
            _signalled = true;
            Monitor.Pulse(_monitor);
        }
    }
}
