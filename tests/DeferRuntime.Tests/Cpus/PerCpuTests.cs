using DeferRuntime.Cpus;
using DeferRuntime.Interrupts;
using DeferRuntime.Softirqs;
using DeferRuntime.Workqueues;

namespace DeferRuntime.Tests.Cpus;

/// <summary>PerCpu&lt;T&gt; (DEFINE_PER_CPU, per_cpu, get_cpu_var, this_cpu_ptr, this_cpu_*) and in_task().</summary>
public class PerCpuTests
{
    [Fact]
    public void In_task_is_false_only_in_hard_irq_and_while_serving_a_softirq()
    {
        using var rt = TestRuntime.Boot(2);
        var seen = new Dictionary<string, bool>();
        void Note(string where)
        {
            lock (seen)
            {
                seen[where] = CpuContext.InTask;
            }
        }

        Note("thread of no CPU");
        rt.OpenSoftirq(SoftirqVector.Block, () => Note("softirq"));
        rt.Bound(0, () =>
        {
            Note("bound task");
            CpuContext.PreemptDisable();
            Note("preempt disabled");
            CpuContext.PreemptEnable();
            using (CpuContext.LocalIrqSave())
            {
                Note("irqs disabled");
            }
            // The softirq runs on this same thread, at the local_bh_enable() that ends the section.
            using (CpuContext.LocalBhDisable())
            {
                Note("bh disabled");
                rt.RaiseSoftirq(SoftirqVector.Block);
            }
        });
        rt.OnCpu(1, () => Note("hard IRQ"));

        using var ran = new ManualResetEventSlim();
        var tasklet = rt.CreateTasklet(_ =>
        {
            Note("tasklet");
            ran.Set();
        }, "in-task");
        rt.OnCpu(1, tasklet.Schedule);
        Wait.For(ran, "the tasklet");

        var work = new WorkStruct(_ => Note("work item"), "in-task");
        Assert.True(rt.SystemWq.QueueOn(1, work));
        work.FlushWork();
        var bhWork = new WorkStruct(_ => Note("bh work item"), "in-task-bh");
        rt.Bound(1, () => Assert.True(rt.SystemBhWq.Queue(bhWork)));
        bhWork.FlushWork();

        var irqs = rt.Irqs;
        int irq = irqs.AllocateIrq();
        using var threadRan = new ManualResetEventSlim();
        using (irqs.RequestThreadedIrq(irq, (_, _) =>
        {
            Note("threaded irq's primary handler");
            return IrqReturn.WakeThread;
        }, (_, _) =>
        {
            Note("irq thread");
            threadRan.Set();
            return IrqReturn.Handled;
        }, IrqFlags.None, "in-task"))
        {
            irqs.AssertEdge(irq);
            Wait.For(threadRan, "the irq thread");
        }

        Assert.Equal(new Dictionary<string, bool>
        {
            ["thread of no CPU"] = true,
            ["bound task"] = true,
            ["preempt disabled"] = true,
            ["irqs disabled"] = true,
            ["bh disabled"] = true, // in_softirq(), yet a task: not serving one
            ["softirq"] = false,
            ["hard IRQ"] = false,
            ["tasklet"] = false,
            ["work item"] = true,
            ["bh work item"] = false,
            ["threaded irq's primary handler"] = false,
            ["irq thread"] = true,
        }, seen);
    }
}
