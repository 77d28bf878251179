using DeferRuntime.Cpus;
using DeferRuntime.Softirqs;

namespace DeferRuntime.Tasklets;

/// <summary>
/// tasklet_action() / tasklet_hi_action(): the TASKLET and HI softirq actions. They take this CPU's
/// whole list and run each tasklet that is enabled and not running elsewhere.
/// </summary>
internal static class TaskletAction
{
    public static void RunNormal() => Run(hi: false);

    public static void RunHi() => Run(hi: true);

    private static void Run(bool hi)
    {
        var ctx = ThreadContext.Current!;
        var cpu = ctx.Cpu;
        var list = hi ? IntrusiveMpsc.TakeAllFifo(ref cpu.Line.HiTaskletHead) : IntrusiveMpsc.TakeAllFifo(ref cpu.Line.TaskletHead);
        int nr = hi ? (int)SoftirqVector.Hi : (int)SoftirqVector.Tasklet;

        while (list is not null)
        {
            var t = list;
            list = ((IIntrusiveNode<Tasklet>)t).Next;
            ((IIntrusiveNode<Tasklet>)t).Next = null;

            if (t.TryLockRun())
            {
                if (t.IsEnabled)
                {
                    if (t.ClearSched())
                    {
                        RunOne(cpu, ctx, t);
                    }
                    else
                    {
                        // WARN_ONCE("tasklet SCHED state not set"): a tasklet on a list is always SCHED.
                        cpu.Runtime.ReportFault(cpu, $"tasklet '{t.Name}'", new InvalidOperationException($"tasklet '{t.Name}' was on CPU {cpu.Id}'s list without TASKLET_STATE_SCHED set"));
                    }
                    t.UnlockRun();
                    cpu.PreemptionPoint(ctx);
                    continue;
                }
                t.UnlockRun();
                // Disabled: keep it queued without re-raising; Enable() raises. Re-check after the push
                // in case Enable() ran between our check and the push (both sides use full barriers).
                Requeue(cpu, t, hi);
                if (t.IsEnabled)
                {
                    cpu.OrSoftirqPending(nr);
                }
            }
            else
            {
                // Running on another CPU: re-queue here and re-raise, as the kernel does.
                Requeue(cpu, t, hi);
                cpu.OrSoftirqPending(nr);
            }
            cpu.PreemptionPoint(ctx);
        }
    }

    private static void Requeue(VirtualCpu cpu, Tasklet t, bool hi)
    {
        t.QueuedOn = cpu;
        if (hi)
        {
            IntrusiveMpsc.Push(ref cpu.Line.HiTaskletHead, t);
        }
        else
        {
            IntrusiveMpsc.Push(ref cpu.Line.TaskletHead, t);
        }
    }

    private static void RunOne(VirtualCpu cpu, ThreadContext ctx, Tasklet t) =>
        cpu.RunCallback(ctx, t, static t => t.Invoke(), static t => $"tasklet '{t.Name}'");
}
