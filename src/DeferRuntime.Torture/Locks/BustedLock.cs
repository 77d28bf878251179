namespace DeferRuntime.Torture.Locks;

/// <summary>
/// lock_busted: locktorture's deliberately broken lock, here a test-and-test-and-set lock that forgot the
/// atomic: it waits until the word reads free, then stores "held" with a plain write, so two threads
/// that both read it free both enter. A run that includes it must fail; that is what proves the checker.
/// </summary>
/// <remarks>
/// The bug alone fails only when the scheduler happens to interleave two writers inside a window of a
/// few instructions, which would make the proof a matter of luck. So the first acquisition of writers 0
/// and 1 is forced through the window together: each waits at a two-party barrier between its test and
/// its set, so both have seen the lock free before either marks it held; then, holding it, each waits at a
/// second barrier, after the exclusion guard has claimed its owner slot, so the two holds overlap while
/// the guard looks. The guard therefore sees an overlap on every run, whatever the timing; later
/// acquisitions keep the plain bug and fail only by chance, as the kernel's would.
/// </remarks>
internal sealed class BustedLock(string name) : TortureLock(name)
{
    /// <summary>Only catches a hang; both parties always arrive (every writer does at least one acquisition).</summary>
    private static readonly TimeSpan Ceiling = TimeSpan.FromSeconds(30);

    private readonly Barrier _window = new(2);  // both forced writers have read the word free
    private readonly Barrier _overlap = new(2); // both forced writers hold it, guard slots claimed
    private readonly int[] _forcedDone = new int[2]; // per forced writer: its first acquisition is over (written by that writer only)
    private int _held; // A: 1 = held; the bug: tested and set in two steps
    private int _forcedOverlaps; // A: forced overlaps that completed (both parties arrived)

    public override bool IsBusted => true;

    /// <summary>How many times the forced overlap happened (1 on every run with two or more writers).</summary>
    public int ForcedOverlaps => Volatile.Read(ref _forcedOverlaps);

    public override void WriteLock(int tid)
    {
        var spin = default(SpinWait);
        while (Volatile.Read(ref _held) != 0)
        {
            spin.SpinOnce(sleep1Threshold: -1);
        }
        if (IsForced(tid))
        {
            // Keep the first reader of "free" in the window until the second has read it too.
            _window.SignalAndWait(Ceiling);
        }
        Volatile.Write(ref _held, 1); // BUG: not a CAS, so a thread that also saw 0 enters as well
    }

    public override void WriteHeld(int tid)
    {
        if (IsForced(tid))
        {
            // Both hold the lock and have claimed the guard's slot before either goes on to release it.
            if (_overlap.SignalAndWait(Ceiling) && tid == 0)
            {
                Interlocked.Increment(ref _forcedOverlaps);
            }
            _forcedDone[tid] = 1;
        }
    }

    public override void WriteUnlock(int tid) => Volatile.Write(ref _held, 0);

    protected override void Dispose(bool disposing)
    {
        if (disposing)
        {
            _window.Dispose();
            _overlap.Dispose();
        }
        base.Dispose(disposing);
    }

    private bool IsForced(int tid) => tid < 2 && _forcedDone[tid] == 0;
}
