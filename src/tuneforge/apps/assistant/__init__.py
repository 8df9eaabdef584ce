"""The customer-service assistant: intents → answer templates, FAQ retrieval, hand-off, feedback."""

from tuneforge.apps.assistant.answers import Answers, AnswersError, load_answers
from tuneforge.apps.assistant.assistant import Assistant
from tuneforge.apps.assistant.feedback import FeedbackLog, read_feedback, training_rows
from tuneforge.apps.assistant.retrieval import BiEncoder, FaqIndex

__all__ = ["Answers", "AnswersError", "Assistant", "BiEncoder", "FaqIndex", "FeedbackLog", "load_answers",
           "read_feedback", "training_rows"]
