using System.Runtime.CompilerServices;
using DeferRuntime.Cpus;
using DeferRuntime.Diagnostics;
using DeferRuntime.Softirqs;

namespace DeferRuntime.Tasklets;

/// <summary>
/// tasklet_action() / tasklet_hi_action(): the TASKLET and HI softirq actions. They run this CPU's bh
/// workqueue pool, then take its whole tasklet list and run each tasklet that is enabled and not running
/// elsewhere.
/// </summary>
internal static class TaskletAction
{
    public static void RunNormal() => Run(hi: false);

    public static void RunHi() => Run(hi: true);

    private static void Run(bool hi)
    {
        var ctx = ThreadContext.Current!;
        var cpu = ctx.Cpu;
        // BH workqueues first, as the kernel's tasklet_action() calls workqueue_softirq_action().
        cpu.Runtime.Wq.RunBh(cpu, ctx, hi);
        // The holder's own list (schedules made in softirq or bh-disabled context here), then the shared
        // one (schedules from other contexts and threads).
        RunList(cpu, ctx, cpu.TakeLocalTasklets(hi), hi);
        RunList(cpu, ctx, hi ? IntrusiveMpsc.TakeAllFifo(ref cpu.Line.HiTaskletHead) : IntrusiveMpsc.TakeAllFifo(ref cpu.Line.TaskletHead), hi);
    }

    private static void RunList(VirtualCpu cpu, ThreadContext ctx, Tasklet? list, bool hi)
    {
        while (list is not null)
        {
            var t = list;
            list = ((IIntrusiveNode<Tasklet>)t).Next;
            ((IIntrusiveNode<Tasklet>)t).Next = null;
            cpu.TaskletBatch = list;

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
                cpu.EnqueueTaskletLocal(t, hi, raise: false);
                if (t.IsEnabled)
                {
                    cpu.RaiseHolderLocal(hi ? (int)SoftirqVector.Hi : (int)SoftirqVector.Tasklet);
                }
            }
            else
            {
                // Running on another CPU: re-queue here and re-raise, as the kernel does.
                cpu.EnqueueTaskletLocal(t, hi);
            }
            cpu.PreemptionPoint(ctx);
        }
    }

    private static void RunOne(VirtualCpu cpu, ThreadContext ctx, Tasklet t)
    {
        // PERF: the tracepoints are one volatile load and a predictable branch each while nobody listens.
        if (DeferRuntimeEventSource.TaskletOn)
        {
            DeferRuntimeEventSource.Log.tasklet_entry(RuntimeHelpers.GetHashCode(t), t.Name, cpu.Id);
        }
        cpu.RunCallback(ctx, t, static t => t.Invoke(), static t => $"tasklet '{t.Name}'");
        cpu.TaskletRuns++;
        if (DeferRuntimeEventSource.TaskletOn)
        {
            DeferRuntimeEventSource.Log.tasklet_exit(RuntimeHelpers.GetHashCode(t), t.Name, cpu.Id);
        }
    }
}
