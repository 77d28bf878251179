using System.Runtime.CompilerServices;
using DeferRuntime.Cpus;
using DeferRuntime.Diagnostics;

namespace DeferRuntime.Timers;

/// <summary>
/// struct hrtimer: a high-resolution timer on the runtime's monotonic clock (<see cref="Runtime.KtimeGetNs"/>),
/// in nanoseconds. Its callback runs in HRTIMER_SOFTIRQ (HRTIMER_MODE_SOFT) on the CPU it was started on,
/// at or after its expiry, and may ask to be restarted (<see cref="HrtimerRestart.Restart"/>, after
/// <see cref="Forward"/>). Create one with <see cref="Runtime.HrtimerSetup"/>; starting and cancelling an
/// existing hrtimer allocate nothing once its CPU's queue has grown to size.
/// </summary>
/// <remarks>
/// Accuracy: never before its expiry; late by the clock event's delivery (a parked CPU's wake-up from a
/// futex timeout, or the current loop pass of a busy CPU) plus HRTIMER_SOFTIRQ scheduling. Field legend:
/// <c>I:</c> set at setup; <c>L:</c> the lock of its CPU's hrtimer base; <c>A:</c> any thread, Volatile.
/// </remarks>
public sealed class Hrtimer
{
    private readonly Func<Hrtimer, HrtimerRestart> _function; // I

    // A: the base it belongs to; null while it migrates between CPUs (see TimerList._base).
    private HrtimerBase? _base;

    internal long ExpiresValue; // L, or the running callback (Forward), which owns an unqueued timer
    internal long Sequence; // L: arming order on its base
    internal int HeapIndex = -1; // L, read lock-free: position in the base's heap, -1 when not queued
    internal HrtimerBase? RunningOn; // A: the base whose softirq runs the callback right now, or null
    internal HrtimerRestart Result; // the running callback's answer, read by the base after it returns
    internal int SyncWaiters; // A: threads waiting in Cancel() for the callback

    internal Hrtimer(Runtime runtime, Func<Hrtimer, HrtimerRestart> function, string? name)
    {
        Runtime = runtime;
        _function = function;
        Name = name ?? CallbackName.Of(function);
        var cpu = CpuContext.CurrentCpu is { } own && ReferenceEquals(own.Runtime, runtime) ? own : runtime.Cpus[0];
        _base = cpu.Timers.Hrtimers;
    }

    /// <summary>The runtime whose CPUs run this timer.</summary>
    public Runtime Runtime { get; }

    /// <summary>A name for fault records and reports.</summary>
    public string Name { get; }

    /// <summary>hrtimer_get_expires(): the expiry in ns since boot (<see cref="Runtime.KtimeGetNs"/>).</summary>
    public long ExpiresNs => Volatile.Read(ref ExpiresValue);

    /// <summary>hrtimer_is_queued(): started and not yet expired. A lock-free snapshot.</summary>
    public bool IsQueued => Volatile.Read(ref HeapIndex) >= 0;

    /// <summary>hrtimer_callback_running(): its callback is running now.</summary>
    public bool IsCallbackRunning => Volatile.Read(ref RunningOn) is not null;

    /// <summary>hrtimer_active(): queued or running its callback.</summary>
    public bool IsActive => IsQueued || IsCallbackRunning;

    /// <summary>The CPU whose queue the timer is on (or was last on).</summary>
    public int Cpu => (Volatile.Read(ref _base) ?? LockBaseAndRead()).Cpu.Id;

    /// <summary>
    /// hrtimer_start(): (re)starts the timer on the calling thread's CPU (from a thread of no CPU, the one
    /// placement picks) for <paramref name="time"/> ns: since boot with <see cref="HrtimerMode.Abs"/>,
    /// from now with <see cref="HrtimerMode.Rel"/>. A queued timer is moved; one whose callback is running
    /// is queued on the CPU where it runs. Allocation-free after warm-up.
    /// </summary>
    public void Start(long time, HrtimerMode mode)
    {
        if ((uint)mode > (uint)HrtimerMode.RelPinned)
        {
            throw new ArgumentOutOfRangeException(nameof(mode), mode, "hrtimer_start(): mode must be Abs, Rel, AbsPinned or RelPinned.");
        }
        var target = Runtime.TimerTarget(-1, "hrtimer_start()", out var foreign);
        try
        {
            StartOn(target, time, relative: mode is HrtimerMode.Rel or HrtimerMode.RelPinned);
        }
        finally
        {
            foreign?.ExitForeign();
        }
    }

    /// <summary>hrtimer_start(timer, delay, HRTIMER_MODE_REL): starts it <paramref name="delay"/> from now.</summary>
    public void Start(TimeSpan delay)
    {
        long ns = delay.Ticks > long.MaxValue / 100 ? long.MaxValue : delay.Ticks < long.MinValue / 100 ? long.MinValue : delay.Ticks * 100;
        Start(ns, HrtimerMode.Rel);
    }

    /// <summary>
    /// hrtimer_try_to_cancel(): 1 if the timer was queued and is now cancelled, 0 if it was not active,
    /// -1 if its callback is running (nothing is changed then). Never waits; any context.
    /// </summary>
    public int TryToCancel()
    {
        var hrBase = LockBase();
        try
        {
            if (Volatile.Read(ref RunningOn) is not null)
            {
                return -1;
            }
            if (HeapIndex >= 0)
            {
                hrBase.Remove(this);
                return 1;
            }
            return 0;
        }
        finally
        {
            hrBase.BaseLock.Exit();
        }
    }

    /// <summary>
    /// hrtimer_cancel(): cancels the timer and waits for a running callback to finish (a restart it asks
    /// for is cancelled too). Returns true if the timer was active. Waits, so it is refused in atomic
    /// context and from the timer's own callback, as <see cref="TimerList.DelTimerSync"/>.
    /// </summary>
    public bool Cancel()
    {
        BaseLocking.CheckMayWaitForCallback(Volatile.Read(ref RunningOn), "hrtimer_cancel()", $"hrtimer '{Name}'", "use TryToCancel() there, or return HrtimerRestart.NoRestart from the callback");
        var backoff = default(Backoff);
        bool waiting = false;
        try
        {
            while (true)
            {
                int result = TryToCancel();
                if (result >= 0)
                {
                    return result == 1;
                }
                if (!waiting)
                {
                    waiting = true;
                    Interlocked.Increment(ref SyncWaiters);
                }
                Runtime.ThrowIfDead("hrtimer_cancel()");
                backoff.Wait();
            }
        }
        finally
        {
            if (waiting)
            {
                Interlocked.Decrement(ref SyncWaiters);
            }
        }
    }

    /// <summary>
    /// hrtimer_forward(): moves the expiry forward by whole <paramref name="intervalNs"/> steps until it is
    /// after <paramref name="nowNs"/>, and returns how many steps were taken (overruns; 0 if it already
    /// was). Only for a timer that is not queued: from its callback, or after cancelling. An interval
    /// under 1 ns (the resolution) counts as 1 ns.
    /// </summary>
    public long Forward(long nowNs, long intervalNs)
    {
        if (IsQueued)
        {
            throw new InvalidOperationException($"hrtimer_forward() on hrtimer '{Name}', which is queued: forward it from its callback or after cancelling it (the kernel WARNs and does nothing).");
        }
        long expires = ExpiresValue;
        long delta = nowNs - expires;
        if (delta < 0)
        {
            return 0;
        }
        long interval = Math.Max(1, intervalNs);
        long overruns = 1;
        if (delta >= interval)
        {
            overruns = delta / interval;
            expires = SaturatingAdd(expires, SaturatingMultiply(interval, overruns));
            if (expires > nowNs)
            {
                Volatile.Write(ref ExpiresValue, expires);
                return overruns;
            }
            overruns++;
        }
        Volatile.Write(ref ExpiresValue, SaturatingAdd(expires, interval));
        return overruns;
    }

    /// <summary>hrtimer_forward_now(): <see cref="Forward"/> past the current time.</summary>
    public long ForwardNow(long intervalNs) => Forward(Runtime.KtimeGetNs(), intervalNs);

    internal void Invoke()
    {
        Result = HrtimerRestart.NoRestart; // what a throwing callback gets
        Result = _function(this);
    }

    private void StartOn(VirtualCpu target, long time, bool relative)
    {
        var newBase = target.Timers.Hrtimers;
        var hrBase = LockBase();
        long expires;
        try
        {
            if (HeapIndex >= 0)
            {
                hrBase.Remove(this);
            }
            // ktime_add_safe(): the clock is read under the lock, as the kernel reads base->get_time().
            expires = relative ? SaturatingAdd(Runtime.KtimeGetNs(), time) : time;
            if (!ReferenceEquals(hrBase, newBase) && Volatile.Read(ref RunningOn) is null)
            {
                // switch_hrtimer_base(). A running callback keeps the timer on its base, so it never
                // runs on two CPUs at once.
                hrBase = BaseLocking.Migrate(ref _base, hrBase, newBase);
            }
            Volatile.Write(ref ExpiresValue, expires);
            hrBase.Enqueue(this);
        }
        finally
        {
            hrBase.BaseLock.Exit();
        }
        hrBase.Cpu.Timers.Program(expires, deferrable: false);
    }

    private HrtimerBase LockBase() => BaseLocking.LockHome(ref _base);

    private HrtimerBase LockBaseAndRead()
    {
        var hrBase = LockBase();
        hrBase.BaseLock.Exit();
        return hrBase;
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static long SaturatingAdd(long a, long b)
    {
        long sum = unchecked(a + b);
        // Overflow only when both operands have the same sign and the sum's sign differs.
        return ((a ^ sum) & (b ^ sum)) < 0 ? (a < 0 ? long.MinValue : long.MaxValue) : sum;
    }

    private static long SaturatingMultiply(long a, long b) => b != 0 && a > long.MaxValue / b ? long.MaxValue : a * b;
}
