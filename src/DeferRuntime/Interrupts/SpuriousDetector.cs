namespace DeferRuntime.Interrupts;

/// <summary>
/// note_interrupt()'s bookkeeping (kernel/irq/spurious.c), kept apart from the descriptor so its
/// threshold can be tested exactly: a window of 100,000 chain runs; if 99,900 of them were unhandled the
/// line is stuck. An unhandled run more than the quiet period after the previous one restarts the
/// unhandled count at 1 (the kernel's HZ/10 check), so rare stray interrupts never add up.
/// </summary>
/// <remarks>
/// The kernel's code disables when the count exceeds 99,900, one more than its own comment ("99,900 of
/// the previous 100,000"); issue 3 asks for the comment's rule: 99,900 disables, 99,899 does not.
/// </remarks>
internal struct SpuriousDetector
{
    private int _count; // chain runs in the current window
    private long _lastUnhandled; // clock ticks of the last unhandled run

    /// <summary>Unhandled runs counted in the current window.</summary>
    public int Unhandled { get; private set; }

    /// <summary>Counts one chain run; true when the window closes with the line judged stuck.</summary>
    public bool Note(bool unhandled, long now, long quietTicks)
    {
        if (unhandled)
        {
            Unhandled = _lastUnhandled == 0 || now - _lastUnhandled > quietTicks ? 1 : Unhandled + 1;
            _lastUnhandled = now;
        }
        if (++_count < IrqDesc.SpuriousWindow)
        {
            return false;
        }
        bool stuck = Unhandled >= IrqDesc.SpuriousThreshold;
        _count = 0;
        Unhandled = 0;
        return stuck;
    }
}
