// fxsim reference RTL: the arithmetic primitives, included inside each module (Verilog-2005 functions
// cannot live outside a module). Values travel sign-extended in 72-bit signed vectors, wide enough for
// any sum of two 64-bit registers and any 64 x 8-bit product; a register of `bits` bits keeps its value
// sign-extended (or zero-extended when unsigned) to 72 bits.
//
// Mode numbers are fxsim's (kernels/rounding.py):
//   rounding: 0 floor, 1 ceil, 2 toward_zero, 3 away_from_zero, 4 half_up, 5 half_down, 6 half_away,
//             7 half_toward_zero, 8 half_even, 9 half_odd, 10 jam
//   overflow: 0 wrap, 1 saturate, 2 saturate_symmetric, 3 saturate_zero

// The overflow stage of a `bits`-wide register (signed when sgn != 0) applied to x.
function signed [71:0] fx_ovf;
    input signed [71:0] x;
    input integer bits;
    input integer sgn;
    input integer mode;
    reg signed [71:0] hi, lo, y;
    begin
        if (sgn != 0) begin
            hi = (72'sd1 <<< (bits - 1)) - 72'sd1;
            lo = -hi - 72'sd1;
            if (mode == 2) lo = -hi;
        end else begin
            hi = (72'sd1 <<< bits) - 72'sd1;
            lo = 72'sd0;
        end
        if (x >= lo && x <= hi) fx_ovf = x;
        else if (mode == 0) begin
            y = x & ((72'sd1 <<< bits) - 72'sd1);
            if (sgn != 0 && y >= (72'sd1 <<< (bits - 1))) y = y - (72'sd1 <<< bits);
            fx_ovf = y;
        end else if (mode == 1 || mode == 2) fx_ovf = (x > hi) ? hi : lo;
        else fx_ovf = 72'sd0;
    end
endfunction

// round(x / 2**s) with rounding `mode`; a negative s is an exact left shift.
function signed [71:0] fx_round;
    input signed [71:0] x;
    input integer s;
    input integer mode;
    reg signed [71:0] q, rem, half;
    reg inc;
    begin
        if (s <= 0) fx_round = x <<< (-s);
        else begin
            q = x >>> s;
            rem = x - (q <<< s);
            half = 72'sd1 <<< (s - 1);
            case (mode)
                0: inc = 1'b0;
                1: inc = rem != 0;
                2: inc = rem != 0 && x < 0;
                3: inc = rem != 0 && x >= 0;
                4: inc = rem >= half;
                5: inc = rem > half;
                6: inc = rem > half || (rem == half && x >= 0);
                7: inc = rem > half || (rem == half && x < 0);
                8: inc = rem > half || (rem == half && q[0]);
                9: inc = rem > half || (rem == half && !q[0]);
                default: inc = 1'b0;
            endcase
            if (mode == 10) fx_round = (rem != 0) ? (q | 72'sd1) : q;
            else fx_round = inc ? q + 72'sd1 : q;
        end
    end
endfunction

// TFLite / gemmlowp MultiplyByQuantizedMultiplier: int32 left shift, SaturatingRoundingDoublingHighMul,
// RoundingDivideByPOT (two roundings).
function signed [71:0] fx_gemmlowp;
    input signed [71:0] x;
    input signed [71:0] m;
    input integer shift;
    reg signed [71:0] xl, ab, t, high, mask, rem, thr;
    integer left, right;
    begin
        left = shift > 0 ? shift : 0;
        right = shift > 0 ? 0 : -shift;
        xl = fx_ovf(x <<< left, 32, 1, 0);
        ab = xl * m;
        t = ab + ((ab >= 0) ? (72'sd1 <<< 30) : (72'sd1 - (72'sd1 <<< 30)));
        high = (t >= 0) ? (t >>> 31) : -((-t) >>> 31);
        if (xl == -(72'sd1 <<< 31) && m == -(72'sd1 <<< 31)) high = (72'sd1 <<< 31) - 72'sd1;
        mask = (72'sd1 <<< right) - 72'sd1;
        rem = high & mask;
        thr = (mask >>> 1) + ((high < 0) ? 72'sd1 : 72'sd0);
        fx_gemmlowp = (high >>> right) + ((rem > thr) ? 72'sd1 : 72'sd0);
    end
endfunction

// TFLite's single-rounding variant (as TOSA): (x * m + 2**(30 - shift)) >> (31 - shift).
function signed [71:0] fx_gemmlowp_single;
    input signed [71:0] x;
    input signed [71:0] m;
    input integer shift;
    integer total;
    begin
        total = 31 - shift;
        fx_gemmlowp_single = (x * m + (72'sd1 <<< (total - 1))) >>> total;
    end
endfunction
