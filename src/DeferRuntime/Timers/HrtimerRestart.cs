namespace DeferRuntime.Timers;

/// <summary>enum hrtimer_restart: what an hrtimer callback asks for when it returns.</summary>
public enum HrtimerRestart
{
    /// <summary>HRTIMER_NORESTART: the timer stays inactive (unless the callback started it again).</summary>
    NoRestart = 0,

    /// <summary>HRTIMER_RESTART: re-queue it at its expiry, which the callback moved on with <see cref="Hrtimer.Forward"/>.</summary>
    Restart = 1,
}
